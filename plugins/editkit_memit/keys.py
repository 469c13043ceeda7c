"""collect-keys: MLP keys at the subject's last token, prefix-averaged (MEMIT, arXiv 2210.07229).

``k_i = ½·k(bare prompt_i) + ½·mean_j k(prefix_j ⊕ prompt_i)``; one batched forward for all
requests and templates, stopped right after the edited module's input is captured. Each prompt is
cut after the subject's last token (attention is causal: later tokens cannot change that key).

:class:`BatchKeys` serves the keys of one batch at every edited site with as little work as the
edits allow: the key at a site depends only on the parameters that run before the site's module,
so it is kept with a fingerprint of those (:func:`fingerprint`: each parameter's version counter)
and recomputed only when one of them changed. The first forward runs to the last site, records
each block's input and call arguments, and captures every site's keys; a later site whose keys a
lower edit made stale starts again from the recorded input of the nearest block below it that is
still valid (typically one block down) instead of from the embeddings. Cp's keys, taken on the
edited model after the batch, are then the kept ones: nothing is recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

from editkit.api import (
    EditRequest,
    InputError,
    StopForward,
    capture_inputs,
    capture_outputs,
    clip_left,
    first_token_from,
    last_token_before,
    max_positions,
    pad_batch,
    run_until_stopped,
    tokenize,
)


def subject_prompts(
    tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], suffix: str = "",
    limit: int | None = None,
) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``template.format(prompt)`` filled with the subject (plus ``suffix`` text),
    and the unpadded index of the subject's last token, request-major, template-minor.

    With ``limit`` (the model's context, :func:`editkit.helpers.contextwindow.max_positions`) a prefixed text
    longer than that loses tokens from the start of its prefix (:func:`editkit.helpers.contextwindow.clip_left`).
    """
    ids, positions = [], []
    for request in requests:
        for template in templates:
            text_template = template.replace("{}", request.prompt)
            before, _, after = text_template.partition("{}")
            text = before + request.subject + after + suffix
            tok = tokenize(tokenizer, text)
            kept, dropped = clip_to_context(tokenizer, text, tok, template, limit, request)
            ids.append(kept)
            positions.append(last_token_before(tokenizer, text, len(before) + len(request.subject), tok) - dropped)
    return ids, positions


def clip_to_context(tokenizer: Any, text: str, tok: Any, template: str, limit: int | None,
                    request: EditRequest) -> tuple[list[int], int]:
    """``text``'s ids cut from the left inside the template's prefix to fit ``limit``: ``(ids, dropped)``."""
    prefix = template.partition("{}")[0]
    keep_from = first_token_from(tokenizer, text, len(prefix), tok) if prefix else 0
    try:
        return clip_left(tok, limit, keep_from)
    except ValueError as exc:
        raise InputError(f"case {request.case_id}: {exc} (prompt {request.filled_prompt!r})") from None


@torch.no_grad()
def collect_keys(
    model: torch.nn.Module,
    tokenizer: Any,
    module: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    device: torch.device,
) -> torch.Tensor:
    """Keys ``K1`` ``[d_in, u]`` (float32) at ``module``'s input."""
    prompts = KeyPrompts.build(tokenizer, requests, templates, device, limit=max_positions(model))
    with capture_inputs(model, [module], stop_after_last=True) as captured:
        run_until_stopped(lambda: model(**prompts.batch.model_inputs()))
    return prompts.average(captured[module], len(templates))


@attrs.frozen(kw_only=True)
class KeyPrompts:
    """Every prompt of a batch (request-major, template-minor), cut after the subject's last token,
    padded; ``rows``/``cols`` index the subject's last token of each."""

    batch: Any  # PaddedBatch [u * n_templates, T]
    rows: torch.Tensor
    cols: torch.Tensor

    @classmethod
    def build(cls, tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], device: torch.device,
              limit: int | None = None) -> KeyPrompts:
        ids, positions = subject_prompts(tokenizer, requests, templates, limit=limit)
        batch = pad_batch(tokenizer, [row[: p + 1] for row, p in zip(ids, positions)], device)
        return cls(batch=batch, rows=torch.arange(len(ids), device=device),
                   cols=torch.tensor([batch.index(r, p) for r, p in enumerate(positions)], device=device))

    def average(self, hidden: torch.Tensor, n_templates: int) -> torch.Tensor:
        """``[d_in, u]`` keys from a module's input ``hidden`` (``[rows, T, d_in]`` or flattened)."""
        hidden = hidden.reshape(len(self.rows), self.batch.input_ids.shape[1], -1)  # [u * n_templates, T, d_in]
        per_prompt = hidden[self.rows, self.cols].float().view(len(self.rows) // n_templates, n_templates, -1)
        bare = per_prompt[:, 0]  # [u, d_in]
        keys = bare if n_templates == 1 else 0.5 * bare + 0.5 * per_prompt[:, 1:].mean(dim=1)  # [u, d_in]
        return keys.T.contiguous().cpu()


def fingerprint(model: torch.nn.Module, skip: Sequence[str]) -> tuple:
    """The state of every parameter of ``model`` except those under the module names ``skip``: each one's
    identity, storage and version counter (which every in-place write, e.g. ``editkit_apply``'s, advances)."""
    prefixes = tuple(f"{name}." for name in skip)
    return tuple((name, p.data_ptr(), p._version) for name, p in model.named_parameters()
                 if not name.startswith(prefixes))


@attrs.frozen(kw_only=True)
class _BlockInput:
    hidden: torch.Tensor  # [rows, T, d_model], the block's input
    state: tuple  # fingerprint of everything that runs before the block


class BatchKeys:
    """The keys of one batch at each site, recomputed only when an edit below the site made them stale.

    ``blocks``: the model's block names (``layout.blocks``); ``last_layer``: the highest layer whose keys
    will be asked for (the first forward runs to it and records every block's call arguments on the way);
    ``first_layer``: the lowest (inputs of blocks below it are not kept: a later start is never below the
    lowest edited block, whose input no edit changes; ``[rows, T, d_model]`` each).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, blocks: Sequence[str], last_layer: int,
                 requests: Sequence[EditRequest], templates: Sequence[str], device: torch.device,
                 first_layer: int = 0) -> None:
        self.model, self.blocks, self.last_layer, self.first_layer = model, list(blocks), last_layer, first_layer
        self.n_templates = len(templates)
        self.prompts = KeyPrompts.build(tokenizer, requests, templates, device, limit=max_positions(model))
        self.keys: dict[str, tuple[torch.Tensor, tuple]] = {}  # module -> (keys, fingerprint)
        self.inputs: dict[int, _BlockInput] = {}  # block -> its recorded input
        self.calls: dict[int, tuple[tuple, dict]] = {}  # block -> (positional args after hidden, kwargs)

    def _key_state(self, layer: int, module: str) -> tuple:
        return fingerprint(self.model, [*self.blocks[layer + 1 :], module])

    @torch.no_grad()
    def __call__(self, layer: int, module: str) -> torch.Tensor:
        """Keys ``[d_in, u]`` (float32, CPU) at ``module``'s input, ``module`` in block ``layer``."""
        kept = self.keys.get(module)
        if kept is not None and kept[1] == self._key_state(layer, module):
            return kept[0]
        start = max((b for b, rec in self.inputs.items()
                     if b <= layer and b in self.calls and rec.state == fingerprint(self.model, self.blocks[b:])),
                    default=None)
        if start is None or any(b not in self.calls for b in range(start, layer + 1)):
            self._first_forward(layer, module)
        else:
            self._from_block(start, layer, module)
        return self.keys[module][0]

    def _first_forward(self, layer: int, module: str) -> None:
        """The whole model up to the input of ``module``, or of block ``last_layer`` when that is later:
        records each block's input and arguments on the way, and the keys of ``module``."""
        last = max(layer, self.last_layer)
        blocks = [self.model.get_submodule(name) for name in self.blocks[: last + 1]]
        states = {b: fingerprint(self.model, self.blocks[b:]) for b in range(last + 1)}

        def recorder(b: int) -> Any:
            def record(block: torch.nn.Module, args: tuple, kwargs: dict) -> None:
                hidden = args[0] if args else kwargs["hidden_states"]
                self.calls[b] = (args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"})
                if b >= min(self.first_layer, layer):
                    self.inputs[b] = _BlockInput(hidden=hidden.detach(), state=states[b])
                if b == last > layer:  # module's input was captured on the way: the arguments are all here
                    raise StopForward
            return record

        handles = [block.register_forward_pre_hook(recorder(b), with_kwargs=True) for b, block in enumerate(blocks)]
        try:
            with capture_inputs(self.model, [module], stop_after_last=last == layer) as captured:
                run_until_stopped(lambda: self.model(**self.prompts.batch.model_inputs(), use_cache=False))
        finally:
            for handle in handles:
                handle.remove()
        if module not in captured:
            raise RuntimeError(f"the forward pass never reached {module}")
        self.keys[module] = (self.prompts.average(captured[module], self.n_templates),
                             self._key_state(layer, module))

    def _from_block(self, start: int, layer: int, module: str) -> None:
        """Blocks ``start..layer`` from the recorded input of block ``start``, stopped at ``module``'s input;
        records the inputs of the blocks it runs."""
        hidden = self.inputs[start].hidden
        for b in range(start, layer + 1):
            if b > start:
                self.inputs[b] = _BlockInput(hidden=hidden, state=fingerprint(self.model, self.blocks[b:]))
            args, kwargs = self.calls[b]
            block = self.model.get_submodule(self.blocks[b])
            if b < layer:
                out = block(hidden, *args, **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
                continue
            with capture_inputs(self.model, [module], stop_after_last=True) as captured:
                run_until_stopped(lambda: block(hidden, *args, **kwargs))  # noqa: B023 (called at once)
            if module not in captured:
                raise RuntimeError(f"block {self.blocks[b]} never reached {module}")
            self.keys[module] = (self.prompts.average(captured[module], self.n_templates),
                                 self._key_state(layer, module))


@torch.no_grad()
def subject_hidden(model: torch.nn.Module, tokenizer: Any, block: str, requests: Sequence[EditRequest],
                   device: torch.device) -> torch.Tensor:
    """``h^L`` ``[u, d_model]`` (float32, CPU): block ``block``'s output at the subject's last token of the
    bare prompts, the forward stopped right after that block."""
    return subject_outputs(model, tokenizer, [block], requests, device)[block]


def subject_outputs(model: torch.nn.Module, tokenizer: Any, modules: Sequence[str], requests: Sequence[EditRequest],
                    device: torch.device) -> dict[str, torch.Tensor]:
    """Each named module's output ``[u, d]`` (float32, CPU) at the subject's last token of the bare prompts, in
    one forward stopped after the last of them."""
    prompts = KeyPrompts.build(tokenizer, requests, ["{}"], device)
    with capture_outputs(model, list(modules), stop_after_last=True) as captured:
        run_until_stopped(lambda: model(**prompts.batch.model_inputs(), use_cache=False))
    return {m: captured[m][prompts.rows, prompts.cols].float().cpu() for m in modules}
