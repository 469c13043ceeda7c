"""A faulty third-party plugin through the command line: every command still works, one warning names it."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from cli_harness import editkit


@pytest.fixture(scope="module")
def faulty_dist(tmp_path_factory):
    """An installed-looking distribution whose plugin registers an editor name that memit already has."""
    root = tmp_path_factory.mktemp("faulty")
    (root / "editkit_faulty_demo.py").write_text(textwrap.dedent('''
        from editkit import hookimpl
        from editkit_memit import EDITOR

        @hookimpl
        def editkit_register_editors(register):
            register(EDITOR)
    '''))
    dist = root / "editkit_faulty_demo-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: editkit-faulty-demo\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[editkit]\nfaulty = editkit_faulty_demo\n")
    return root


def with_path(root):
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def test_help_works_and_warns_once_naming_plugin_distribution_and_the_way_out(faulty_dist, tmp_path):
    proc = editkit("--help", cwd=tmp_path, env=with_path(faulty_dist))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    for text in ("'faulty'", "editkit-faulty-demo", "registered twice", "EDITKIT_DISABLE_PLUGINS=faulty"):
        assert text in warnings[0]
    assert "run" in proc.stdout


def test_plugins_lists_the_failure_and_the_rest(faulty_dist, tmp_path):
    proc = editkit("plugins", "--json", cwd=tmp_path, env=with_path(faulty_dist))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    [failed] = data["failed"]
    assert failed["name"] == "faulty" and failed["phase"] == "registration"
    assert failed["distribution"] == "editkit-faulty-demo"
    names = {p["name"] for p in data["plugins"]}
    assert "memit" in names and "faulty" not in names


def test_disabling_it_silences_the_warning(faulty_dist, tmp_path):
    proc = editkit("--help", cwd=tmp_path, env={**with_path(faulty_dist), "EDITKIT_DISABLE_PLUGINS": "faulty"})
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
