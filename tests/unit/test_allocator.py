"""Handing freed heap memory back: after glibc's dynamic threshold has risen, freed mid-sized blocks stay resident
in the heap until :func:`release_free_memory` returns them; ``EDITKIT_MALLOC_TRIM=0`` keeps them; the manifest's
words name the policy."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from editkit import allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and the heap policy are glibc's")

# In a fresh interpreter: free a 4 MiB mapped block (glibc then serves blocks under 4 MiB from the heap), write
# 64 blocks of 1 MiB there, put a block after them (so they are not the heap's top, which glibc trims by
# itself), free the 64, then release; prints what release said and how many MiB of resident memory it returned.
PROBE = textwrap.dedent("""
    import ctypes
    from editkit.allocator import release_free_memory

    def resident():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(4 << 20))
    blocks = [libc.malloc(1 << 20) for _ in range(64)]
    for block in blocks:
        ctypes.memset(block, 1, 1 << 20)
    guard = libc.malloc(2 << 20)  # too large for a hole below: it lands above the 64
    for block in blocks:
        libc.free(block)
    before = resident()
    said = release_free_memory()
    print(said, (before - resident()) >> 20)
""")


def _probe(**env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != allocator.TRIM_VARIABLE}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**environ, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    said, returned = out.stdout.split()
    return said, int(returned)


@glibc
def test_release_returns_freed_heap_blocks_to_the_system() -> None:
    said, returned_mib = _probe()
    assert said == "True"
    assert returned_mib >= 48  # of the 64 MiB freed (Python's own heap traffic may reuse some of it)


@glibc
def test_with_trimming_off_freed_heap_blocks_stay_resident() -> None:
    said, returned_mib = _probe(EDITKIT_MALLOC_TRIM="0")
    assert said == "False"
    assert returned_mib < 16  # the 64 MiB stay: what moved is the interpreter's own


@glibc
def test_the_manifest_names_the_threshold_and_the_trimming() -> None:
    assert allocator.describe({}) == "glibc, dynamic mmap threshold, free pages returned after each stage"
    assert allocator.describe({"MALLOC_MMAP_THRESHOLD_": "131072", "EDITKIT_MALLOC_TRIM": "0"}) == (
        "glibc, mmap threshold fixed at 131072 bytes, no trimming")


def test_off_glibc_release_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.release_free_memory() is False
    assert allocator.trimming({}) is False
    assert allocator.describe({}) == "the platform's allocator"
