"""Peak memory: measured per stage, and predicted as a formula of the model and the edited layers.

Measured: CUDA allocator peaks on GPUs, the process's peak resident memory on CPU. A stage's figure is the peak
since the previous stage ended: on Linux the kernel's high-water mark (``VmHWM``) is reset to the current resident
size after each stage (``5`` to ``/proc/self/clear_refs``); where that cannot be done (other systems, a kernel that
refuses) the peak never goes down and a stage's figure is the process peak at its end. The kernel keeps one mark:
after a reset, ``getrusage`` (and ``/usr/bin/time``) also see only the peak since; :class:`PeakMeter` resets and
keeps the largest it saw (a run's: :meth:`editkit.run.EditRun.peak_memory_so_far`).

Predicted (:func:`run_memory`): what one batch of a locate-then-edit run holds, stage by stage, from the shapes
alone. For ``n`` edited layers of input width ``d`` (``d_mlp``) and output width ``D`` (``d_model``), weights
stored in ``w`` bytes per element, ``m`` the stored null-space basis's columns (the smaller of the null space and
its complement), ``u`` edits::

    weights              every parameter                                      (held throughout)
    W0 + undo            2 · n · D · d · w     initial weights; the batch's previous weights (undo depth 1)
    C0 sums              n · d² · 4            Σ k kᵀ as stored (float32), every edited layer
    eigenvalues          n · d · 8             (null-space constraint)
    one layer's d²       d² · 8                that layer's eigenvectors (null space) or C0/N (MEMIT), never
                                               more than one layer's at a time (the store has the rest)
    bases                Σ d · m · 8           the null-space basis of each layer solved so far
    Cp                   n · d² · 4            float32, made once the batch is committed (+ d² · 4 while one
                                               layer's is made)
    keys                 n · d · u · 8         the batch's keys, kept for Cp and its undo
    block inputs         B · t · D · w         the key prompts' (t tokens) inputs of the B blocks from the lowest
                                               edited layer up, kept until the batch ends
    solved updates       n · D · d · 8         post hoc only: each layer's solved Δ (float64), kept until the
                                               batch's constraints run (inline, each is dropped once written)

and the transients of the stage that is running: a stored file is copied out of its memory map (its size again
while it is read); v*'s activations (:func:`vstar_bytes`); the first key forward (the edited module's input and
one block's MLP, ``4 · t · d · w``); the solve's working matrices (range basis: ``m² · 8``
twice and ``d · D · 8`` twice; complement basis or C0: ``d² · 8`` three times and ``d · D · 8`` twice). The peak is
the largest stage. ``baseline`` is the process before the model (the interpreter and its libraries).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence

import attrs
import torch

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def reset_peak(device: torch.device) -> None:
    """Start a new peak: the CUDA allocator's, or on Linux the process's resident high-water mark (best effort)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif sys.platform.startswith("linux"):
        try:
            with open(_CLEAR_REFS, "w") as fh:
                fh.write("5")  # VmHWM := VmRSS (Linux >= 4.0)
        except OSError:
            pass  # the peak stays the process's


def peak_bytes(device: torch.device) -> int:
    """The peak since the last :func:`reset_peak` (where it could reset; else the process's peak), in bytes."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _high_water_mark()
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


class PeakMeter:
    """Peak memory on one device in laps: :meth:`lap` gives the peak since the previous lap and starts a new one;
    the meter keeps the highest peak of any lap, so a reset never loses the run's peak (:meth:`so_far`)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.highest = 0  # bytes

    def lap(self) -> int:
        peak = peak_bytes(self.device)
        self.highest = max(self.highest, peak)
        reset_peak(self.device)
        return peak

    def so_far(self) -> int:
        """The highest peak since the meter began, the lap under way included."""
        return max(self.highest, peak_bytes(self.device))


def _high_water_mark() -> int | None:
    """Linux's ``VmHWM`` in bytes, or None where there is no such figure."""
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


@attrs.frozen(kw_only=True)
class SiteShape:
    """One edited weight: input width ``d_in`` (keys), output width ``d_out``, and ``null`` the dimension of its
    null space (None without the null-space constraint)."""

    d_in: int = attrs.field(validator=attrs.validators.gt(0))
    d_out: int = attrs.field(validator=attrs.validators.gt(0))
    null: int | None = attrs.field(default=None)

    @null.validator
    def _check_null(self, attribute: attrs.Attribute, value: int | None) -> None:
        if value is not None and not 0 <= value <= self.d_in:
            raise ValueError(f"null must be in 0..d_in={self.d_in}, got {value}")

    @property
    def basis(self) -> int:
        """Columns of the stored basis: the null space, or its complement where that is smaller."""
        return 0 if self.null is None else min(self.null, self.d_in - self.null)


@attrs.frozen(kw_only=True)
class MemoryEstimate:
    """Bytes per stage of one batch (``stages``), the largest (``peak``, at ``peak_stage``) and the terms held at
    the batch's end (``held``)."""

    stages: dict[str, int]
    held: dict[str, int]

    @property
    def peak_stage(self) -> str:
        return max(self.stages, key=lambda name: self.stages[name])

    @property
    def peak(self) -> int:
        return self.stages[self.peak_stage]


def vstar_bytes(*, tokens: int, upper_blocks: int, d_model: int, d_mlp: int, target_tokens: int, kl_rows: int,
                vocab: int, element: int = 4) -> int:
    """v*'s activations in one step: what autograd keeps for the backward through the blocks above the edited
    layer (per token and block, about ``11·d_model + 3·d_mlp`` values in a Llama block with frozen weights: the
    two norms' inputs and outputs, q, k, v, the attention output, the MLP's gate, up and activation), plus the
    unembedding at the target positions and the KL rows (logits, log-softmax and its gradient: 3 × ``vocab``).
    ``tokens``: columns the step runs (rows × their widths from the subject's last token). v* optimises one group
    of requests at a time (requests grouped by suffix width): give the largest group's figures."""
    per_token = 11 * d_model + 3 * d_mlp
    return element * (tokens * upper_blocks * per_token + 3 * (target_tokens + kl_rows) * vocab)


def run_memory(*, weights: int, weight_element: int, sites: Sequence[SiteShape], edits: int, background: bool,
               vstar: int = 0, baseline: int = 0, stats_element: int = 4, key_tokens: int = 0,
               key_blocks: int = 0, posthoc: bool = False) -> MemoryEstimate:
    """The stages of one batch (the first of a run) and their bytes, as the module docstring lays out.

    ``weights``: bytes of every parameter; ``weight_element``: bytes per element of the edited weights (and of the
    activations); ``background``: the solve adds λ·C0 (MEMIT; its float64 C0/N is the layer's d² matrix);
    ``vstar``: v*'s activations (:func:`vstar_bytes`); ``baseline``: the process before the model;
    ``key_tokens``: the padded tokens of the key prompts (rows × columns: every request under every prefix, cut
    after the subject); ``key_blocks``: the blocks from the lowest edited layer to the highest, whose inputs the
    batch keeps (``[key_tokens, d_model]`` each) until its end; ``posthoc``: the constraints act post hoc, so every
    layer's solved update is kept until they do.
    """
    if not sites:
        raise ValueError("run_memory needs at least one edited site")
    nullspace = any(s.null is not None for s in sites)
    base = baseline + weights + sum(s.d_in * s.d_out * weight_element for s in sites)  # + W0
    c0 = sum(s.d_in * s.d_in * stats_element for s in sites)
    eigenvalues = sum(s.d_in * 8 for s in sites) if nullspace else 0
    stages: dict[str, int] = {}
    largest_file = max(s.d_in * s.d_in * stats_element for s in sites)
    stages["load C0"] = base + c0 + largest_file  # the last file is mapped while it is copied out
    stages["v*"] = base + c0 + vstar
    d_model, d_mlp = sites[0].d_out, max(s.d_in for s in sites)
    recorded = key_blocks * key_tokens * d_model * weight_element
    # the first key forward: the blocks' inputs kept, the edited module's input captured [tokens, d_mlp], and one
    # block's working set (the MLP's gate, up and product [tokens, d_mlp], the block's output)
    stages["collect keys"] = base + c0 + recorded + key_tokens * (4 * d_mlp + d_model) * weight_element
    undo = bases = solved = 0
    for i, s in enumerate(sites):
        held = base + c0 + eigenvalues + undo + bases + recorded + solved  # before this layer
        square = s.d_in * s.d_in * 8  # this layer's eigenvectors or C0/N, float64 (the previous layer's is gone)
        result = 2 * s.d_in * s.d_out * 8  # K Rᵀ and the solution, float64 [d_in, d_out]
        if nullspace:
            stages[f"eigenvectors {i}"] = held + 2 * square  # read from the store's cache: mapped + copied
            basis = s.d_in * s.basis * 8
            if s.null is not None and s.null <= s.d_in - s.null:  # the null space itself: an m × m system
                working = 2 * s.basis * s.basis * 8 + s.basis * s.d_out * 8 + result
            else:  # its complement: P A P in a d_in² matrix, its Cholesky factor, A U and U (UᵀAU)
                working = 2 * square + 2 * s.d_in * s.basis * 8 + result
            stages[f"solve {i}"] = held + basis + square + working
            bases += basis
        else:  # A = K Kᵀ + λ C0/N and its Cholesky factor
            stages[f"solve {i}"] = held + square + 2 * square + result
        undo += s.d_in * s.d_out * weight_element
        if posthoc:  # this layer's update, float64, kept until the batch's constraints run
            solved += s.d_in * s.d_out * 8
    last_square = sites[-1].d_in * sites[-1].d_in * 8
    keys = sum(s.d_in * edits * 8 for s in sites)
    cp = sum(s.d_in * s.d_in * 4 for s in sites)
    end = base + c0 + eigenvalues + undo + bases + last_square + keys + recorded + solved
    stages["commit Cp"] = end + cp + max(s.d_in * s.d_in * 4 for s in sites)  # one layer's new Cp from zeros
    held_terms = {
        "baseline": baseline,
        "weights": weights,
        "W0 + undo": 2 * sum(s.d_in * s.d_out * weight_element for s in sites),
        "C0 sums": c0,
        "eigenvalues": eigenvalues,
        "one layer's d² (float64)": last_square,
        "null-space bases": bases,
        "Cp": cp,
        "keys": keys,
        "key prompts' block inputs": recorded,
        "solved updates (float64)": solved,
    }
    return MemoryEstimate(stages=stages, held=held_terms)
