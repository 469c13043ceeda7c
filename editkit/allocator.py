"""Handing freed heap memory back to the system between the stages of an edit (glibc), and naming the heap
policy a run had, for its manifest.

glibc serves a request of at least its mmap threshold (128 KiB at start) with its own mapping, unmapped when freed.
Once such a block is freed, glibc raises the threshold to that block's size (up to 32 MiB on 64-bit), so later
tensors up to that size come from the heap, and the heap keeps what they leave when freed: it returns only the
free space at its top. An edit frees many such tensors between stages and between v*'s groups of requests, so on
CPU a stage inherits what the ones before it left resident. :func:`release_free_memory` (``malloc_trim(0)``)
hands back every free page of the heap; the kernel calls it as each stage of a batch ends, and an editor may call
it between parts of a stage (MEMIT does between v* groups). It costs one pass over the heap's free lists and, for
a freed page used again, one page fault. On a Qwen2.5-Coder-1.5B batch it brought the stages after v* from
1.15–1.23× their memory formula to 0.99–1.18×, but not v*'s own peak (1.17×).

The other remedy, ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment, fixes the threshold so every block of
128 KiB or more is mapped afresh: it held that batch to its memory formula (0.95×), but every such
allocation then pays page faults, and a SmolLM2 batch took 1.4× as long (docs/memory.md). It stays the user's
choice; :func:`describe` records it. ``EDITKIT_MALLOC_TRIM=0`` turns the trimming off.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping
from functools import cache

GLIBC_THRESHOLD_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
TRIM_VARIABLE = "EDITKIT_MALLOC_TRIM"


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def trimming(environ: Mapping[str, str] | None = None) -> bool:
    """Whether :func:`release_free_memory` hands memory back: on glibc, unless ``EDITKIT_MALLOC_TRIM=0``."""
    env = os.environ if environ is None else environ
    return _glibc() is not None and env.get(TRIM_VARIABLE, "1") != "0"


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim(0)``); whether any were. A no-op
    returning False off glibc or with ``EDITKIT_MALLOC_TRIM=0``. Process-wide, and safe at any time."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None and trimming() else False


def describe(environ: Mapping[str, str] | None = None) -> str:
    """The heap policy of this process, in words, for a run's manifest."""
    env = os.environ if environ is None else environ
    if _glibc() is None:
        return "the platform's allocator"
    threshold = (f"mmap threshold fixed at {env[GLIBC_THRESHOLD_VARIABLE]} bytes"
                 if GLIBC_THRESHOLD_VARIABLE in env else "dynamic mmap threshold")
    return f"glibc, {threshold}, " + ("free pages returned after each stage" if trimming(env) else "no trimming")
