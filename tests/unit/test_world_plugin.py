"""The demo world's plugin registration: dataset parts and the world command, without a model."""

from __future__ import annotations

import sys

from editkit.plugins import PluginHost
from editkit.requests import requests_from_records


def test_demo_dataset_and_world_command_are_registered():
    host = PluginHost()
    demo = host.catalog.get("datasets", "demo")
    assert demo.model is not None and demo.corpus is not None and demo.extras is not None
    assert "world" in host.catalog.entries["commands"]
    requests = requests_from_records(demo.load(n=50))
    assert len(requests) == 50 and len({r.subject for r in requests}) == 50
    assert all(r.target_new != r.target_true and r.neighborhood_prompts for r in requests)


def test_extras_give_one_probe_per_fact_and_reference_texts():
    import editkit_world.plugin as plugin

    extras = plugin._extras()
    probes = extras["fact_probes"]
    assert len(probes) == len({(s, p) for s, p, _ in probes}) == 6000
    subject, prompt, obj = probes[0]
    assert subject in prompt and obj in extras["reference_texts"]
    assert all(obj in text for text in extras["reference_texts"][obj])


def test_plugin_module_does_not_import_torch():
    import subprocess

    code = "import sys, editkit_world.plugin; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
