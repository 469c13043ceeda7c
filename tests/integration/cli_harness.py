"""Calling ``editkit`` from the command line: a subprocess, its exit code and what it printed.

Shared by the command-line test modules: every bad input must end with the documented
exit code, one clear message naming the input, no traceback, and nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

SUBJECTS = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan"]
MORE_SUBJECTS = ["Lionel Messi", "Steve Jobs", "Paris", "France"]


def editkit(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m editkit ARGV`` with one torch thread and a private cache (``EDITKIT_CACHE`` = ``cwd/.cache``
    unless ``env`` sets it)."""
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "EDITKIT_CACHE": str(cwd / ".cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "editkit", *map(str, argv)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_failure(proc: subprocess.CompletedProcess, *, code: int = 2, mentions: tuple[str, ...] = ()) -> None:
    """Exit ``code``, no traceback, and every string of ``mentions`` in the error output."""
    shown = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == code, shown
    assert "Traceback" not in proc.stderr, shown
    for text in mentions:
        assert str(text) in proc.stderr, f"{text!r} not named\n{shown}"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (relative path → size, mtime_ns), to assert that nothing was written."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_setup(root: Path, family: str = "gpt2", requests: int = 4) -> dict[str, Path]:
    """A saved 4-layer model of ``family`` with its tokenizer, a corpus and ``requests`` (4 or 8) requests under
    ``root``."""
    root = Path(root)
    tok = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, logit_scale=20)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "corpus.txt").write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()))
    records = [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": s,
                "target_new": {"str": "English"}, "target_true": {"str": "French"}}}
               for i, s in enumerate((SUBJECTS + MORE_SUBJECTS)[:requests])]
    (root / "requests.json").write_text(json.dumps(records))
    return {"model": root / "model", "corpus": root / "corpus.txt", "requests": root / "requests.json"}


def fast_run_args(paths: dict[str, Path], out: Path) -> list[str]:
    """A complete, quick ``editkit run`` on :func:`tiny_setup`'s files (two batches of two)."""
    return ["run", "--model", str(paths["model"]), "--requests", str(paths["requests"]), "--constraint", "nullspace",
            "--corpus", str(paths["corpus"]), "--batch-size", "2", "--set", "v_steps=4",
            "--set", "nullspace.threshold=1e-3", "--metrics", "none", "--quiet", "--out", str(out)]
