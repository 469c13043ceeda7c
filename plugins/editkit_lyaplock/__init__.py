"""First-party plugin: the LyapLock editor (Wang et al., "LyapLock: Bounded Knowledge Preservation in Sequential
Large Language Model Editing", arXiv 2505.15702, EMNLP 2025; the code read is the copy in github.com/SasyaTitech/NAS,
``baselines/lyaplock/lyaplock_main.py``, the original repository not being found).

MEMIT's keys, v* and layer spreading; the solve weighs the preservation of the unedited model's outputs by a
Lyapunov virtual queue ``Z`` that grows while the accumulated preservation loss ``PL(W) = E‖(W − W0) k0‖²`` stays
above its budget ``α·D`` (``D``: the loss after the first batch), and keeps the values earlier edits were given::

    Δ = [V R Kᵀ + aZλ (W0 − W) C0 + V (S_vk − W S_kk)] · (V K Kᵀ + aZλ C0 + V S_kk)⁻¹
    Z ← max(Z + a (PL(W_new) − α D) + b, √(αD)),   a = 1/√(αD)

(the first batch: MEMIT's solve, ``Δ = R Kᵀ (K Kᵀ + λ C0)⁻¹``). ``S_kk = Σ K Kᵀ`` and ``S_vk = Σ (W_new K) Kᵀ``
over earlier batches. Its solve pulls ``W`` back toward ``W0`` over all of ``C0``, which a null-space restriction
would contradict: with ``--constraint nullspace`` or ``betaedit`` it is refused.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import EditorSpec, hookimpl
from editkit_lyaplock.hparams import PRESETS, LyapLockHParams

NOT_PROJECTED = ("LyapLock's solve pulls W back toward W0 over all of C0 and keeps earlier edits' values; "
                 "restricting it to a null space is defined neither in its paper nor in its code")


def _create(hparams: LyapLockHParams) -> object:
    from editkit_lyaplock.editor import LyapLockStages

    return LyapLockStages(hparams)


EDITOR = EditorSpec(
    name="lyaplock",
    summary="LyapLock: MEMIT's keys and v* with a solve whose preservation weight is a Lyapunov virtual queue on "
    "the accumulated loss E‖(W − W0)k0‖² (arXiv 2505.15702)",
    factory=_create,
    hparams=LyapLockHParams,
    presets=PRESETS,
    computes_targets=True,
    has_solver=False,  # its solve does not honour a row subspace (and the null-space methods are refused)
    conflicts={"nullspace": NOT_PROJECTED, "betaedit": NOT_PROJECTED},
)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
