"""Calibrated defaults (RunConfig.defaults, e.g. a dataset's own model's settings): they apply only
where a method of the run holds the hyperparameter, and every explicit choice beats them."""

from __future__ import annotations

import pytest

from editkit import EditRun, RunConfig
from editkit.errors import UsageError
from editkit.plugins import PluginHost
from editkit.testing.tiny import tiny_model, tiny_tokenizer

DEFAULTS = {"v_lr": "2", "clamp_norm": "3", "nullspace.l2": "3", "prune.alpha": "5", "no_such_field": "1"}


def make_run(**config):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=2, d_model=16, d_mlp=32)
    return EditRun(model=model, tokenizer=tok, config=RunConfig(**config), host=PluginHost())


def test_defaults_apply_where_held_and_yield_to_explicit_choices():
    run = make_run(constraints=("nullspace",), defaults=DEFAULTS.items(), overrides={"v_lr": "0.7"}.items())
    assert run.editor_hparams.v_lr == 0.7  # --set wins
    assert run.editor_hparams.clamp_norm == 3.0  # default applied
    assert run.constraint_hparams["nullspace"].l2 == 3.0
    assert "prune" not in run.constraint_hparams  # a default for a method that does not run is dropped


def test_defaults_do_not_touch_absent_constraints_and_preset_beats_them():
    run = make_run(defaults=DEFAULTS.items(), preset="gpt2-xl", layers=(0, 1))
    assert run.constraint_hparams == {}
    assert run.editor_hparams.v_lr == 0.5  # the preset's value, not the default's
    assert run.editor_hparams.clamp_norm == 3.0


def test_defaults_are_recorded_and_user_typos_still_fail():
    config = RunConfig(defaults=DEFAULTS.items())
    assert config.to_json()["defaults"] == DEFAULTS
    with pytest.raises(UsageError, match="no_such_field"):
        make_run(overrides={"no_such_field": "1"}.items())
