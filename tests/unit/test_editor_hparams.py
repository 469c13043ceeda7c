"""The rome, emmet and ft hyperparameters: the published presets build, and settings calibrated for MEMIT's v*
(the demo world's) reach ROME only where they mean the same thing."""

from __future__ import annotations

import editkit_emmet
import editkit_ft
import editkit_rome
import pytest
from editkit_world.plugin import DEMO_SETTINGS

from editkit.hparams import applicable, build


@pytest.mark.parametrize("plugin", [editkit_rome, editkit_emmet, editkit_ft])
def test_every_preset_builds(plugin):
    spec = plugin.EDITOR
    assert spec.presets
    for name, values in spec.presets.items():
        hparams = build(spec.name, spec.hparams, dict(values))
        assert all(getattr(hparams, k) == (tuple(v) if isinstance(v, list) else v) for k, v in values.items()), name


def test_memit_calibrated_clamp_does_not_reach_romes_clamp():
    """ROME clamps δ relative to ‖m_init‖ (MLP output), MEMIT relative to ‖h_init‖ (block output): the demo world's
    clamp_norm=2 is MEMIT's and is not applied to ROME; the learning rate and steps are."""
    owners = [("rome", editkit_rome.EDITOR.hparams)]
    used = applicable(DEMO_SETTINGS, owners)
    assert "clamp_norm" in DEMO_SETTINGS and "clamp_norm" not in used
    assert {"v_lr", "v_steps"} <= set(used)
