"""compute-residual, part 1: target hidden states ``z`` (v*: MEMIT, Meng et al. 2023, arXiv 2210.07229).

One vector ``δ_i`` per request is added to the output of block ``L`` (the last edited layer)
at the subject's last token of every prompt of that request, and optimised with Adam::

    L_i(δ_i) = mean_j NLL(target | prefix_j ⊕ prompt_i)          (teacher-forced, per-token mean)
             + κ · KL(P_δ(·|"{s} is a") ‖ P_0(·|"{s} is a"))    (at the subject's last token)
             + β · ‖δ_i‖ / ‖h_i‖²                              (not squared, as the reference)

stop for request i when ``L_i < early_stop`` (checked before the step; no step on the last
iteration), then clamp ``‖δ_i‖ ≤ c·‖h_i‖``. All requests of a group are optimised together
in one batched forward per step; each request has its own Adam state and stops on its own,
and stopped requests leave the batch. Because the losses are independent and Adam is
elementwise, this equals optimising one request at a time (tested).

What a step computes is the floor of the algorithm: with suffix-only steps every row runs on its
own columns only, from the subject's last token (where δ enters) to its end: the rows are split
into *segments* of one width (:func:`width_segments`; a segment's forward and backward run on
``rows × width`` columns of blocks ``L+1..end``), and the KL prompt ``"{s} is a"`` ends at the
subject's last token, where its loss is taken (attention is causal, so the tokens after it never
mattered). The unembedding runs only at the positions where a loss is taken, and no gradient
reaches a weight (the model's parameters do not require one).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, cast

import attrs
import torch

from editkit.api import (
    EditRequest,
    ModelLayout,
    first_token_from,
    fused_activations,
    last_token_before,
    max_positions,
    pad_batch,
    release_free_memory,
    tokenize,
)
from editkit_memit.keys import clip_to_context
from editkit_memit.upper import SuffixForward, make_forward

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@attrs.frozen(kw_only=True)
class VStarSettings:
    lr: float
    steps: int
    weight_decay: float
    clamp_norm: float
    kl_factor: float
    early_stop_loss: float
    forward: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "suffix", "upper", "full")))
    fused: bool = True  # fused equivalents of unfused activation modules during the steps
    # the blocks of each step under torch.autocast in bfloat16 (δ, Adam, the unembedding and the loss stay in
    # the model's precision); off by default: z moves by ~1e-2 relative (benchmarks/bench_smollm2_speed.py)
    autocast: str = attrs.field(default="none", validator=attrs.validators.in_(("none", "bfloat16")))
    # ENCORE's most-probable early stopping (arXiv 2502.01636; its compute_z.py): a request stops, before its
    # step, on the n-th step at which the new object is the argmax at every target position of every rewrite
    # prompt (not necessarily consecutive); 0: off
    stop_after_argmax: int = attrs.field(default=0, validator=attrs.validators.ge(0))


@attrs.frozen(kw_only=True)
class Targets:
    """``z`` ``[u, d_model]`` (= ``h_init + δ``), ``h_init`` ``[u, d_model]``, and diagnostics."""

    z: torch.Tensor = attrs.field(eq=False, repr=False)
    h_init: torch.Tensor = attrs.field(eq=False, repr=False)
    steps: tuple[int, ...]
    final_loss: tuple[float, ...]


@attrs.frozen(kw_only=True)
class _Prompts:
    """The padded prompt batch of a group and where to read and write in it."""

    batch: Any  # PaddedBatch [n_rows, T]
    row_request: torch.Tensor  # [n_rows] request index (within the group) of each row
    lookup: torch.Tensor  # [n_rows] padded column of the subject's last token
    is_kl: torch.Tensor  # [n_rows] bool, the "{s} is a" rows
    is_bare: torch.Tensor  # [n_rows] bool, rewriting rows with the bare "{}" template
    tok_row: torch.Tensor  # [n_tok] row of each target token
    tok_col: torch.Tensor  # [n_tok] padded column whose logits predict it
    tok_id: torch.Tensor  # [n_tok] the target token id


@attrs.frozen(kw_only=True)
class _Row:
    """One prompt row of a request before padding; ``lookup`` and ``targets`` columns are unpadded."""

    ids: tuple[int, ...]
    request: int  # index within the group
    lookup: int  # the subject's last token (where δ enters)
    is_kl: bool
    is_bare: bool
    targets: tuple[tuple[int, int], ...]  # (column whose logits predict the token, token id)

    @property
    def width(self) -> int:
        """Columns from the subject's last token to the row's end: all that δ reaches."""
        return len(self.ids) - self.lookup


def _rows(tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str],
          limit: int | None = None) -> list[_Row]:
    """Every row of every request, request-major: the rewriting prompts (one per template), then the KL
    prompt ``"{s} is a"`` cut after the subject's last token (its loss is taken there; attention is causal)."""
    rows: list[_Row] = []
    for r, request in enumerate(requests):
        for j, template in enumerate(templates):
            before, _, after = template.replace("{}", request.prompt).partition("{}")
            prompt_text = before + request.subject + after
            full = prompt_text + request.target_new
            tok = tokenize(tokenizer, full)
            first = first_token_from(tokenizer, full, len(prompt_text), tok)
            if first >= len(tok.ids) or first == 0:
                raise ValueError(
                    f"case {request.case_id}: target {request.target_new!r} produced no tokens after the prompt"
                )
            # the model reads all but the last token: a prefixed row loses prefix tokens beyond limit + 1
            kept, dropped = clip_to_context(tokenizer, full, tok, template, None if limit is None else limit + 1,
                                            request)
            rows.append(_Row(
                ids=tuple(kept[:-1]),  # teacher forcing: the last target token is only predicted
                request=r,
                lookup=last_token_before(tokenizer, full, len(before) + len(request.subject), tok) - dropped,
                is_kl=False, is_bare=j == 0,
                targets=tuple((t - 1 - dropped, tok.ids[t]) for t in range(first, len(tok.ids))),
            ))
        kl_text = f"{request.subject} is a"
        tok = tokenize(tokenizer, kl_text)
        lookup = last_token_before(tokenizer, kl_text, len(request.subject), tok)
        rows.append(_Row(ids=tuple(tok.ids[: lookup + 1]), request=r, lookup=lookup, is_kl=True, is_bare=False,
                         targets=()))
    return rows


def _pad(tokenizer: Any, rows: Sequence[_Row], device: torch.device, left: bool = False) -> _Prompts:
    side = getattr(tokenizer, "padding_side", "right")
    try:
        if left:
            tokenizer.padding_side = "left"
        batch = pad_batch(tokenizer, [row.ids for row in rows], device)
    finally:
        tokenizer.padding_side = side
    targets = [(i, col, token) for i, row in enumerate(rows) for col, token in row.targets]
    return _Prompts(
        batch=batch,
        row_request=torch.tensor([row.request for row in rows], device=device),
        lookup=torch.tensor([batch.index(i, row.lookup) for i, row in enumerate(rows)], device=device),
        is_kl=torch.tensor([row.is_kl for row in rows], device=device),
        is_bare=torch.tensor([row.is_bare for row in rows], device=device),
        tok_row=torch.tensor([t[0] for t in targets], device=device, dtype=torch.long),
        tok_col=torch.tensor([batch.index(t[0], t[1]) for t in targets], device=device, dtype=torch.long),
        tok_id=torch.tensor([t[2] for t in targets], device=device, dtype=torch.long),
    )


def _build_prompts(
    tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], device: torch.device,
    left: bool = False, limit: int | None = None,
) -> _Prompts:
    """All rows of ``requests`` in one padded batch."""
    return _pad(tokenizer, _rows(tokenizer, requests, templates, limit), device, left)


SEGMENT_COLUMNS = 30
"""A segment of rows costs one more forward and backward per step, a fixed overhead (operator dispatch, the
cache copy) of roughly this many token-columns' work: :func:`width_segments` merges a segment into the next
wider one when that adds at most this many columns. Measured on SmolLM2-135M, 20 requests, one CPU thread:
6, 15 and 30 (7, 5 and 4 segments; 572, 596 and 628 columns) took 3.17, 3.08 and 2.99 s a step."""


def width_segments(rows: Sequence[_Row], merge_columns: int = SEGMENT_COLUMNS) -> list[list[int]]:
    """Row indices grouped by width (:attr:`_Row.width`), narrowest first, so that a suffix-only step runs
    each row on its own columns only; a segment whose rows would pay at most ``merge_columns`` extra
    columns in the next wider one joins it."""
    by_width: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_width.setdefault(row.width, []).append(index)
    segments: list[list[int]] = []
    pending: list[int] = []
    widths = sorted(by_width)
    for i, w in enumerate(widths):
        pending += by_width[w]
        following = widths[i + 1] if i + 1 < len(widths) else None
        if following is None or sum(following - rows[j].width for j in pending) > merge_columns:
            segments.append(pending)
            pending = []
    return segments


def optimise_targets(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    block: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    settings: VStarSettings,
    device: torch.device,
    group_size: int = 0,
    on_step: Any = None,
    layout: ModelLayout | None = None,
    min_group: int = 16,
    norm_reference: Sequence[float] | None = None,
) -> Targets:
    """Optimise ``z`` for every request, ``group_size`` requests together (0: all at once).

    ``norm_reference`` (one positive value per request): the norm the decay ``β·‖δ‖/ref²`` and the clamp
    ``‖δ‖ ≤ c·ref`` are relative to; None (MEMIT): ``‖h_init‖``, the block output itself. ROME gives the
    norm of the MLP output ``‖m_init‖`` there (rome/compute_v.py: ``target_init``).

    ``block`` is the name of block ``L``. With ``layout`` the steps may run from block ``L`` up
    (``settings.forward``: ``auto``/``upper``); without it every step runs the full model.
    With ``group_size`` 0 and suffix-only steps (``auto``/``suffix``), requests are grouped by
    how many columns follow their subject (:func:`suffix_groups`; ``min_group`` requests at least), and
    within a group the rows by their own width (:func:`width_segments`), so that no row pays for a
    longer suffix than its own; requests are independent, so grouping does not change ``z``.
    ``on_step(advance, active)`` is called after every step of every group; the ``advance``
    values of a whole call add up to ``settings.steps`` when no group stops early (one per step
    when there is one group), whatever the grouping, so a progress bar of ``settings.steps``
    never overfills.
    """
    placement = (block, layout)
    if group_size in (0, None):
        if settings.forward in ("auto", "suffix") and len(requests) > 1:
            groups = suffix_groups(tokenizer, requests, templates, min_group, max_positions(model))
        else:
            groups = [list(range(len(requests)))]
    else:
        groups = [list(range(i, min(i + group_size, len(requests)))) for i in range(0, len(requests), group_size)]
    report = None if on_step is None else (lambda it, active: on_step(1 / len(groups), active))
    if norm_reference is not None and len(norm_reference) != len(requests):
        raise ValueError(f"norm_reference has {len(norm_reference)} values for {len(requests)} requests")
    parts = []
    with fused_activations(model) if settings.fused else nullcontext():
        for group in groups:
            parts.append(_optimise_group(
                model, tokenizer, placement, [requests[i] for i in group], templates, settings, device, report,
                None if norm_reference is None else [float(norm_reference[i]) for i in group]))
            release_free_memory()  # what this group's steps freed, before the next (wider) group allocates
    order = [i for group in groups for i in group]
    position = {request: at for at, request in enumerate(order)}  # original index -> place in `order`
    rank = torch.tensor([position[i] for i in range(len(requests))])
    steps = [s for p in parts for s in p.steps]
    losses = [x for p in parts for x in p.final_loss]
    return Targets(
        z=torch.cat([p.z for p in parts])[rank],
        h_init=torch.cat([p.h_init for p in parts])[rank],
        steps=tuple(steps[int(r)] for r in rank),
        final_loss=tuple(losses[int(r)] for r in rank),
    )


def suffix_groups(tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str],
                  min_group: int = 16, limit: int | None = None) -> list[list[int]]:
    """Request indices grouped by suffix width (columns from the subject's last token to the end
    of the longest of the request's prompts, left-padded), shortest first. A group smaller than
    ``min_group`` merges into the next wider one (fewer, larger batched steps beat exact widths
    for a handful of requests); leftovers join the widest group."""
    prompts = _build_prompts(tokenizer, requests, templates, torch.device("cpu"), left=True, limit=limit)
    width = prompts.batch.input_ids.shape[1] - prompts.lookup  # [n_rows]
    per_request = torch.zeros(len(requests), dtype=torch.long).scatter_reduce(
        0, prompts.row_request.cpu(), width.cpu(), reduce="amax"
    )
    by_width: dict[int, list[int]] = {}
    for index, w in enumerate(per_request.tolist()):
        by_width.setdefault(int(w), []).append(index)
    groups: list[list[int]] = []
    pending: list[int] = []
    for w in sorted(by_width):
        pending += by_width[w]
        if len(pending) >= min_group:
            groups.append(pending)
            pending = []
    if pending:
        if groups:
            groups[-1] += pending  # the leftovers join the widest group
        else:
            groups.append(pending)
    return groups


def _optimise_group(
    model: torch.nn.Module,
    tokenizer: Any,
    placement: tuple[str, ModelLayout | None],
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    s: VStarSettings,
    device: torch.device,
    on_step: Any,
    norm_reference: Sequence[float] | None = None,
) -> Targets:
    block, layout = placement
    suffix = s.forward in ("auto", "suffix")
    all_rows = _rows(tokenizer, requests, templates, limit=max_positions(model))
    layer = layout.blocks.index(block) if layout is not None else -1
    # (prompts, forward) per segment of rows; suffix-only steps: rows of one width together
    segments: list[tuple[Any, Any]] = []
    for indices in width_segments(all_rows, SEGMENT_COLUMNS) if suffix else [list(range(len(all_rows)))]:
        prompts = _pad(tokenizer, [all_rows[i] for i in indices], device, left=suffix)
        split = int(prompts.lookup.min()) if suffix else None
        like = next((f for _, f in segments if isinstance(f, SuffixForward)), None)  # checked on earlier rows
        segments.append((prompts, make_forward(model, layout, layer, block, prompts.batch.model_inputs(), s.forward,
                                               split, like)))
    unembed: Any = cast(Any, model).get_output_embeddings()
    u = len(requests)
    d_model = _width(model)
    param_dtype = next(model.parameters()).dtype
    dtype = param_dtype if param_dtype in (torch.float32, torch.float64) else torch.float32  # optimiser state
    delta = torch.zeros(u, d_model, device=device, dtype=dtype, requires_grad=True)  # [u, d_model]
    adam_m = torch.zeros(u, d_model, device=device, dtype=dtype)
    adam_v = torch.zeros(u, d_model, device=device, dtype=dtype)
    adam_t = torch.zeros(u, device=device, dtype=dtype)
    h_init = torch.zeros(u, d_model, device=device, dtype=dtype)
    kl_init: torch.Tensor | None = None  # [u, vocab] log-probs at δ = 0
    active = torch.ones(u, dtype=torch.bool, device=device)
    steps_taken = [0] * u
    final_loss = [float("nan")] * u
    n_rewrite = torch.bincount(torch.tensor([row.request for row in all_rows if not row.is_kl], device=device),
                               minlength=u)
    argmax_steps = torch.zeros(u, dtype=torch.long, device=device)  # MPES: steps with every target token top-1

    for it in range(s.steps):
        req_idx = active.nonzero().flatten()  # [a] requests still optimised
        local = torch.full((u,), -1, dtype=torch.long, device=device)
        local[req_idx] = torch.arange(len(req_idx), device=device)
        nll = torch.zeros(len(req_idx), device=device, dtype=dtype)
        kl = torch.zeros(len(req_idx), device=device, dtype=dtype)
        missed = torch.zeros(len(req_idx), dtype=torch.long, device=device)  # target tokens not top-1
        for prompts, forward in segments:
            offset = forward.offset  # the forward returns columns offset..T
            rows = active[prompts.row_request].nonzero().flatten()  # [n] rows of active requests
            if not len(rows):
                continue
            row_req_local = local[prompts.row_request[rows]]  # [n] in 0..a-1
            row_of = torch.full((len(prompts.row_request),), -1, dtype=torch.long, device=device)
            row_of[rows] = torch.arange(len(rows), device=device)
            lookup = prompts.lookup[rows] - offset

            def add_delta(
                h: torch.Tensor, lookup: torch.Tensor = lookup, shift_rows: torch.Tensor = req_idx[row_req_local]
            ) -> torch.Tensor:  # h [n, T, d_model]
                shift = torch.zeros_like(h).index_put(
                    (torch.arange(h.shape[0], device=h.device), lookup), delta[shift_rows].to(h.dtype)
                )
                return h + shift

            with _autocast(s.autocast, device):
                h_base, hidden = forward(rows, add_delta)  # [n, T, d_model] each
            hidden = hidden.to(param_dtype)

            if it == 0:
                bare = prompts.is_bare[rows]
                h_init[row_req_local[bare]] = h_base[bare.nonzero().flatten(), lookup[bare]].detach().to(dtype)

            tok_keep = row_of[prompts.tok_row] >= 0
            if bool(tok_keep.any()):
                tok_rows = row_of[prompts.tok_row[tok_keep]]
                tok_logits = unembed(hidden[tok_rows, prompts.tok_col[tok_keep] - offset]).to(dtype)  # [n_tok, V]
                tok_nll = -torch.log_softmax(tok_logits, dim=-1).gather(1, prompts.tok_id[tok_keep, None])[:, 0]
                per_row = torch.zeros(len(rows), device=device, dtype=dtype).index_add(0, tok_rows, tok_nll)
                per_row = per_row / torch.bincount(tok_rows, minlength=len(rows)).clamp(min=1)
                rewrite = ~prompts.is_kl[rows]
                nll = nll.index_add(0, row_req_local[rewrite], per_row[rewrite])
                if s.stop_after_argmax:
                    wrong = (tok_logits.argmax(dim=-1) != prompts.tok_id[tok_keep]).long()  # [n_tok]
                    wrong_rows = torch.zeros(len(rows), dtype=torch.long, device=device).index_add(0, tok_rows, wrong)
                    missed = missed.index_add(0, row_req_local[rewrite], wrong_rows[rewrite])

            kl_rows = prompts.is_kl[rows].nonzero().flatten()
            if len(kl_rows):
                kl_logp = torch.log_softmax(unembed(hidden[kl_rows, lookup[kl_rows]]).to(dtype), dim=-1)  # [k, V]
                kl_req = row_req_local[kl_rows]
                if kl_init is None:
                    kl_init = torch.zeros(u, kl_logp.shape[-1], device=device, dtype=dtype)
                if it == 0:
                    kl_init[req_idx[kl_req]] = kl_logp.detach()
                kl = kl.index_add(0, kl_req, (kl_logp.exp() * (kl_logp - kl_init[req_idx[kl_req]])).sum(-1))
        if it == 0:
            reference = (h_init.norm(dim=-1) if norm_reference is None
                         else torch.tensor(norm_reference, device=device, dtype=dtype))  # [u]
        nll = nll / n_rewrite[req_idx]
        d = delta[req_idx]
        decay = s.weight_decay * d.norm(dim=-1) / reference[req_idx] ** 2
        loss = nll + s.kl_factor * kl + decay  # [a]

        loss_values = loss.detach().cpu().tolist()
        last = it == s.steps - 1
        finished = torch.tensor([v < s.early_stop_loss or last for v in loss_values], device=device)
        if s.stop_after_argmax:
            argmax_steps[req_idx] += (missed == 0).long()
            finished = finished | (argmax_steps[req_idx] >= s.stop_after_argmax)
        for i, r in enumerate(req_idx.tolist()):
            final_loss[r] = loss_values[i]
            steps_taken[r] = it
        stepping = req_idx[~finished]
        if len(stepping):
            (loss[~finished].sum()).backward()
            with torch.no_grad():
                assert delta.grad is not None
                grad = delta.grad[stepping]
                adam_t[stepping] += 1
                adam_m[stepping] = ADAM_BETAS[0] * adam_m[stepping] + (1 - ADAM_BETAS[0]) * grad
                adam_v[stepping] = ADAM_BETAS[1] * adam_v[stepping] + (1 - ADAM_BETAS[1]) * grad * grad
                t = adam_t[stepping][:, None]
                denom = adam_v[stepping].sqrt() / (1 - ADAM_BETAS[1] ** t).sqrt() + ADAM_EPS
                new = delta[stepping] - (s.lr / (1 - ADAM_BETAS[0] ** t)) * adam_m[stepping] / denom
                limit = s.clamp_norm * reference[stepping][:, None]
                norm = new.norm(dim=-1, keepdim=True)
                new = torch.where(norm > limit, new * (limit / norm), new)
                delta[stepping] = new
            delta.grad = None
        active[req_idx[finished]] = False
        if on_step is not None:
            on_step(it, len(req_idx))
        if not active.any():
            break

    with torch.no_grad():
        z = (h_init + delta).detach()
    return Targets(z=z.cpu(), h_init=h_init.cpu(), steps=tuple(steps_taken), final_loss=tuple(final_loss))


def _autocast(mode: str, device: torch.device) -> Any:
    if mode == "none":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, mode))


def _width(model: torch.nn.Module) -> int:
    config: Any = model.config
    return int(getattr(config, "hidden_size", None) or config.n_embd)
