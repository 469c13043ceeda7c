"""Configuration of a world-model build: the world, the architecture and the training run.

:class:`BuildConfig` bundles a :class:`~editkit_world.world.WorldConfig`, a
:class:`ModelConfig` and a :class:`TrainConfig`; :meth:`BuildConfig.tag` names its cache
directory, so any change of world, architecture or training gives a new cache entry. Tests
shrink a build with :meth:`BuildConfig.tiny` or ``attrs.evolve``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from editkit_world.world import WorldConfig

__all__ = ["FORMAT_VERSION", "BuildConfig", "ModelConfig", "TrainConfig"]

FORMAT_VERSION = 2
"""Bumped when the generator, tokenizer or training code changes what a config produces."""

_ge = attrs.validators.ge
_gt = attrs.validators.gt


@attrs.frozen(kw_only=True)
class ModelConfig:
    """GPT-2 architecture and tokenizer size.

    Attributes:
        n_layer: transformer blocks.
        n_embd: d_model.
        n_inner: d_mlp (the MLP's hidden width; MEMIT's key dimension).
        n_head: attention heads (must divide ``n_embd``).
        n_positions: longest sequence (prompts here are under 32 tokens).
        vocab_size: learned BPE vocabulary size (special tokens included); the subjects' family
            names are added on top as one token each (see :mod:`editkit_world.tokenizer`).
        initializer_range: standard deviation of the initial weights (GPT-2's 0.02 is meant
            for d_model 768 and up; a larger one shortens the plateau before memorisation).
        embedding_std: standard deviation of the initial token embeddings. Large, untied input
            embeddings make subjects distinct from the first step, so memorisation starts
            sooner (see :mod:`editkit_world.train` for the measurements).
        tie_word_embeddings: whether the output embedding shares the input embedding's weights.
    """

    n_layer: int = attrs.field(default=6, validator=_ge(1))
    n_embd: int = attrs.field(default=128, validator=_ge(8))
    n_inner: int = attrs.field(default=512, validator=_ge(8))
    n_head: int = attrs.field(default=4, validator=_ge(1))
    n_positions: int = attrs.field(default=64, validator=_ge(16))
    vocab_size: int = attrs.field(default=1536, validator=_ge(300))
    initializer_range: float = attrs.field(default=0.08, validator=_gt(0))
    embedding_std: float = attrs.field(default=1.0, validator=_gt(0))
    tie_word_embeddings: bool = False

    def __attrs_post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head: {self.n_head} does not divide n_embd {self.n_embd}")


@attrs.frozen(kw_only=True)
class TrainConfig:
    """How the world model is trained (AdamW, label smoothing, early stop at a recall target).

    An *epoch* states every fact once, each in a train template drawn at random, plus
    ``filler_fraction`` × (number of facts) filler sentences. Training stops at the end of the
    first epoch whose recall on ``eval_sample`` sampled train probes reaches
    ``stop_recall``, or after ``max_epochs``. Both rules are deterministic; the optional
    ``time_budget_s`` is not (it depends on the machine's speed), so it is off by default.

    Attributes:
        batch_size: sentences per step.
        lr: peak learning rate (linear warm-up, then cosine decay towards ``lr * final_lr_ratio``
            over ``planned_epochs``).
        final_lr_ratio: the decayed learning rate's share of ``lr``.
        warmup_steps: linear warm-up steps.
        planned_epochs: length of the cosine schedule in epochs.
        max_epochs: hard limit on epochs.
        weight_decay: AdamW weight decay on weight matrices (never on biases and norms).
        decay_embeddings: whether the token and position embeddings are decayed too.
        label_smoothing: cross-entropy label smoothing; with weight decay and the early stop,
            it keeps the model from extreme confidence (``small-model-calibration.md``, point 1).
        filler_fraction: filler sentences per fact sentence in an epoch.
        stop_recall: sampled train-probe recall at which training stops.
        eval_sample: train probes sampled for the per-epoch recall check.
        time_budget_s: if set, also stop after this many seconds of training (experiments only).
        wrong_sample: fact probes sampled to measure a wrong object's probability.
        threads: torch CPU threads during the build (restored afterwards). One thread makes
            the result independent of the host's thread count and is robust when other
            processes share the cores (several OpenMP threads on a busy machine can be many
            times slower than one).
    """

    batch_size: int = attrs.field(default=32, validator=_ge(1))
    lr: float = attrs.field(default=1.5e-3, validator=_gt(0))
    final_lr_ratio: float = attrs.field(default=0.1, validator=_ge(0))
    warmup_steps: int = attrs.field(default=50, validator=_ge(0))
    planned_epochs: int = attrs.field(default=20, validator=_ge(1))
    max_epochs: int = attrs.field(default=40, validator=_ge(1))
    weight_decay: float = attrs.field(default=0.1, validator=_ge(0))
    decay_embeddings: bool = False
    label_smoothing: float = attrs.field(default=0.1, validator=_ge(0))
    filler_fraction: float = attrs.field(default=0.05, validator=_ge(0))
    stop_recall: float = attrs.field(default=0.965, validator=_ge(0))
    eval_sample: int = attrs.field(default=1000, validator=_ge(1))
    time_budget_s: float | None = attrs.field(default=None, validator=attrs.validators.optional(_gt(0)))
    wrong_sample: int = attrs.field(default=2000, validator=_ge(1))
    threads: int = attrs.field(default=1, validator=_ge(1))


@attrs.frozen(kw_only=True)
class BuildConfig:
    """Everything a world-model build depends on (besides the code's :data:`FORMAT_VERSION`).

    Attributes:
        world: the world generator's config (its seed is the build's seed).
        model: the architecture.
        train: the training run.
    """

    world: WorldConfig = attrs.field(factory=WorldConfig)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)

    @property
    def seed(self) -> int:
        return self.world.seed

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        return cls(world=WorldConfig(**data["world"]), model=ModelConfig(**data["model"]),
                   train=TrainConfig(**data["train"]))

    def tag(self) -> str:
        """The cache directory name: format version, seed and a hash of the whole config."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        return f"v{FORMAT_VERSION}-s{self.seed}-{digest}"

    @classmethod
    def tiny(cls, seed: int = 0) -> BuildConfig:
        """A build that takes seconds (for tests): 40 subjects, 2 layers of width 64, 2 epochs."""
        return cls(
            world=WorldConfig(seed=seed, n_subjects=40, n_given_names=10, train_filler=50, background_filler=100),
            model=ModelConfig(n_layer=2, n_embd=64, n_inner=128, n_head=2, vocab_size=600),
            train=TrainConfig(batch_size=64, max_epochs=2, planned_epochs=2, warmup_steps=2, eval_sample=50,
                              wrong_sample=50),
        )
