"""Causal tracing (ROME, Meng et al. 2022, §2.1): which layers carry a fact at the subject's last token.

For a fact ``(subject, prompt, object)`` the model gets right, three kinds of run are compared, all
scored by ``P(o | prompt)``, the probability of the object's first token at the prompt's last position:

* the *clean* run;
* *corrupted* runs: Gaussian noise ``ν·σ·N(0, I)`` is added to the embeddings of every subject token
  (the input embedding module's output), ``samples`` draws per fact; ``σ`` is the standard deviation
  of all elements of the subject tokens' embeddings over the traced facts (ROME's
  ``collect_embedding_std``), ``ν = 3`` by default;
* *corrupted-with-restoration* runs: the same noise draws, but one module's output at the subject's
  last token ``t`` is replaced by its value in the clean run — ``mlp``: the MLP output of layer ``L``
  (the output of the down-projection, what MEMIT edits; with ``window`` w the layers
  ``max(0, L − ⌊w/2⌋) … min(n, L + ⌈w/2⌉) − 1`` together, as ROME's Fig. 1 uses w = 10);
  ``hidden``: the decoder block's output (the residual stream) at layer ``L``.

The indirect effect of ``(kind, L)`` on a fact is ``IE = mean_s P_restored,s − mean_s P_corrupted,s``
over the same draws ``s`` (paired), and :func:`summarise` averages it over facts (mean and standard
error, ``sd / √n``). The noise of a fact is drawn from a generator seeded by ``(seed, fact.index)``,
so a fact's result does not depend on the other facts traced, and every restoration of a fact
sees the same draws (as in ROME).

Hooks are the scoped ones of :mod:`editkit.helpers.tracing`; each forward runs up to ``rows`` copies of
one prompt (no padding) and only the last position's logits are formed when the model allows it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import attrs
import torch

from editkit.helpers.scoring import continuation_scores
from editkit.helpers.tokens import first_token_from, last_token_before, tokenize
from editkit.helpers.tracing import capture_outputs, edit_output
from editkit.job.facts import Fact
from editkit.layout import LayoutError, ModelLayout

KINDS = ("mlp", "hidden")


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


def _kinds(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = [k for k in value if k not in KINDS]
    if unknown or not value or len(set(value)) != len(value):
        raise ValueError(f"{attribute.name}: expected distinct kinds among {', '.join(KINDS)}, got {list(value)}")


@attrs.frozen(kw_only=True)
class TraceSettings:
    """``samples`` noise draws per fact; noise ``noise`` × σ; ``seed``; MLP restoration ``window``;
    the ``kinds`` of restoration traced; at most ``rows`` sequences per forward."""

    samples: int = attrs.field(default=10, validator=_positive)
    noise: float = attrs.field(default=3.0, validator=_positive)
    seed: int = 0
    window: int = attrs.field(default=1, validator=_positive)
    kinds: tuple[str, ...] = attrs.field(default=KINDS, converter=tuple, validator=_kinds)
    rows: int = attrs.field(default=128, validator=_positive)

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "kinds": list(self.kinds), "token": "subject_last"}


@attrs.frozen(kw_only=True)
class PreparedFact:
    """A fact tokenised: the prompt's ids (special tokens included), the subject's token range
    ``[first, last]`` (inclusive) and the object's first token."""

    fact: Fact
    ids: tuple[int, ...]
    subject_first: int
    subject_last: int
    object_token: int


def prepare(tokenizer: Any, fact: Fact) -> PreparedFact:
    """Tokenise ``prompt + object`` once; ``ValueError`` when the subject or object has no token of its own."""
    full = fact.prompt + fact.object
    tok = tokenize(tokenizer, full)
    first_object = first_token_from(tokenizer, full, len(fact.prompt), tok)
    if not 0 < first_object < len(tok.ids):
        raise ValueError(f"object: {fact.object.strip()!r} has no token of its own after {fact.prompt!r}")
    subject_first = first_token_from(tokenizer, full, fact.subject_start, tok)
    subject_last = last_token_before(tokenizer, full, fact.subject_end, tok)
    if not 0 <= subject_first <= subject_last < first_object:
        raise ValueError(f"subject: no token of {fact.subject!r} found before the object in {fact.prompt!r}")
    return PreparedFact(fact=fact, ids=tok.ids[:first_object], subject_first=subject_first,
                        subject_last=subject_last, object_token=tok.ids[first_object])


def known(model: torch.nn.Module, tokenizer: Any, facts: Sequence[Fact], *, device: Any = "cpu",
          batch_size: int = 64) -> list[bool]:
    """Per fact: whether the model gets it right, every object token the argmax (teacher-forced)."""
    scores = continuation_scores(model, tokenizer, [f.prompt for f in facts], [f.object for f in facts],
                                 batch_size=batch_size, device=device)
    return [bool(hits.all()) for _, hits in scores]


def input_embedding_name(model: torch.nn.Module) -> str:
    """The dotted name of the model's input embedding module (whose output the noise corrupts)."""
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if getter is not None else None
    name = next((n for n, m in model.named_modules() if m is embedding), None) if embedding is not None else None
    if name is None:
        raise LayoutError(f"{type(model).__name__}: no input embedding module found (get_input_embeddings)")
    return name


@torch.no_grad()
def subject_embedding_std(model: torch.nn.Module, facts: Sequence[PreparedFact]) -> float:
    """σ: the standard deviation of every element of the subject tokens' input embeddings, over ``facts``."""
    embedding = model.get_submodule(input_embedding_name(model))
    device = next(model.parameters()).device
    rows = [embedding(torch.tensor([p.ids[p.subject_first : p.subject_last + 1]], device=device))[0] for p in facts]
    return float(torch.cat(rows).double().std())


def _last_logits(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward(ids) -> logits at the last position`` ``[n, vocab]``, forming only those when the model can."""
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters

    def forward(ids: torch.Tensor) -> torch.Tensor:
        if keep:
            return model(input_ids=ids, logits_to_keep=1).logits[:, -1]
        return model(input_ids=ids).logits[:, -1]

    return forward


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """The layers restored together for ``layer`` (ROME's window, centred as ROME centres it)."""
    return range(max(0, layer - window // 2), min(n_layers, layer + (window + 1) // 2))


@attrs.frozen(kw_only=True)
class FactTrace:
    """One fact's trace: ``clean`` and mean ``corrupted`` probabilities of the object's first token, and
    per kind the mean probability with each layer restored (``restored[kind][layer]``)."""

    fact: Fact
    clean: float
    corrupted: float
    restored: Mapping[str, tuple[float, ...]]
    subject_tokens: tuple[int, int]

    def effects(self, kind: str) -> list[float]:
        """The indirect effect per layer: restored − corrupted."""
        return [p - self.corrupted for p in self.restored[kind]]

    def to_json(self) -> dict[str, Any]:
        return {**self.fact.to_json(), "subject_tokens": list(self.subject_tokens), "clean": self.clean,
                "corrupted": self.corrupted,
                **{f"{kind}_restored": list(values) for kind, values in self.restored.items()}}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def noise_generator(seed: int, index: int) -> torch.Generator:
    """The generator of fact ``index``'s noise draws: one stream per (seed, fact)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % (2**63))


@torch.no_grad()
def trace_fact(model: torch.nn.Module, layout: ModelLayout, prepared: PreparedFact, noise_scale: float,
               settings: TraceSettings) -> FactTrace:
    """Trace one fact (see the module docstring); ``noise_scale`` is ``ν·σ``."""
    device = next(model.parameters()).device
    embedding = input_embedding_name(model)
    modules = {"mlp": layout.mlp_out, "hidden": layout.blocks}
    n_layers = layout.n_layers
    first, last = prepared.subject_first, prepared.subject_last
    ids = torch.tensor([prepared.ids], device=device)
    forward = _last_logits(model)
    names = sorted({name for kind in settings.kinds for name in modules[kind]})
    with capture_outputs(model, names) as captured:
        clean_logits = forward(ids)
        clean_states = {name: captured[name][0, last].clone() for name in names}
    clean = float(torch.softmax(clean_logits[0].double(), dim=-1)[prepared.object_token])

    d_model = layout.d_model
    draws = torch.randn(settings.samples, last - first + 1, d_model, generator=noise_generator(settings.seed,
                        prepared.fact.index), dtype=torch.float64) * noise_scale  # [S, subject tokens, d]
    draws = draws.to(device)
    # one row per (restoration, draw); restoration None: the corrupted baseline
    plan: list[tuple[tuple[str, int] | None, int]] = [(None, s) for s in range(settings.samples)]
    for kind in settings.kinds:
        plan += [((kind, layer), s) for layer in range(n_layers) for s in range(settings.samples)]
    probabilities: list[float] = []
    for chunk in _chunks(plan, settings.rows):
        samples = torch.tensor([s for _, s in chunk], device=device)
        restore: dict[str, list[int]] = {}
        for row, (job, _) in enumerate(chunk):
            if job is None:
                continue
            kind, layer = job
            layers = window_layers(layer, settings.window, n_layers) if kind == "mlp" else range(layer, layer + 1)
            for restored_layer in layers:
                restore.setdefault(modules[kind][restored_layer], []).append(row)

        def corrupt(h: torch.Tensor, samples: torch.Tensor = samples) -> torch.Tensor:
            h = h.clone()
            h[:, first : last + 1] += draws[samples].to(h.dtype)
            return h

        with ExitStack() as stack:
            stack.enter_context(edit_output(model, embedding, corrupt))
            for name, rows in restore.items():
                stack.enter_context(edit_output(model, name, _restorer(rows, clean_states[name], last)))
            logits = forward(ids.expand(len(chunk), -1))
        probabilities += torch.softmax(logits.double(), dim=-1)[:, prepared.object_token].tolist()
    samples_n = settings.samples
    corrupted = sum(probabilities[:samples_n]) / samples_n
    restored: dict[str, tuple[float, ...]] = {}
    offset = samples_n
    for kind in settings.kinds:
        values = []
        for _ in range(n_layers):
            values.append(sum(probabilities[offset : offset + samples_n]) / samples_n)
            offset += samples_n
        restored[kind] = tuple(values)
    return FactTrace(fact=prepared.fact, clean=clean, corrupted=corrupted, restored=restored,
                     subject_tokens=(first, last))


def _restorer(rows: list[int], clean: torch.Tensor, position: int) -> Callable[[torch.Tensor], torch.Tensor]:
    index = torch.tensor(rows, device=clean.device)

    def restore(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        h[index, position] = clean.to(h.dtype)
        return h

    return restore


@attrs.frozen(kw_only=True)
class Estimate:
    """Mean over facts and its standard error (``sd / √n``, sample sd; None for one fact)."""

    mean: float
    se: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        n = len(values)
        mean = math.fsum(values) / n
        if n < 2:
            return cls(mean=mean, se=None, n=n)
        variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
        return cls(mean=mean, se=math.sqrt(variance / n), n=n)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "se": self.se}


def summarise(traces: Sequence[FactTrace], kinds: Sequence[str], n_layers: int) -> dict[str, Any]:
    """Per layer and kind the mean indirect effect over facts (:class:`Estimate`), and the mean clean
    and corrupted probabilities."""
    if not traces:
        raise ValueError("no fact was traced")
    layers = []
    for layer in range(n_layers):
        row: dict[str, Any] = {"layer": layer}
        for kind in kinds:
            row[kind] = Estimate.of([t.effects(kind)[layer] for t in traces]).to_json()
        layers.append(row)
    return {"clean": Estimate.of([t.clean for t in traces]).to_json(),
            "corrupted": Estimate.of([t.corrupted for t in traces]).to_json(), "layers": layers}


__all__ = ["KINDS", "Estimate", "FactTrace", "PreparedFact", "TraceSettings", "input_embedding_name", "known",
           "prepare", "subject_embedding_std", "summarise", "trace_fact", "window_layers"]
