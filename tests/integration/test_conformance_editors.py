"""The rome, emmet and ft editors pass the conformance suite (alone, and with --constraint nullspace)."""

from __future__ import annotations

import editkit_emmet
import editkit_ft
import editkit_rome

from editkit.testing.conformance import make_conformance_tests

# tiny random models: the MLP output at layer 1 has norm ~0.05, so ROME's decay β‖δ‖/‖m‖² and clamp c‖m‖
# (relative to it, as the reference) need other values than the published ones to move the target
TestRomeConformance = make_conformance_tests(
    plugin=editkit_rome, editor="rome", families=["gpt2", "llama"],
    overrides={"rome.layers": "1", "rome.clamp_norm_factor": "50", "rome.v_weight_decay": "1e-4"},
    invalid_hparams={"layers": ["1,2"], "constraint_key": ["middle"], "rcond": ["1"]})
TestEmmetConformance = make_conformance_tests(
    plugin=editkit_emmet, editor="emmet", families=["llama"],
    invalid_hparams={"emmet_lambda": ["-1"], "rcond": ["0"]})
TestFtConformance = make_conformance_tests(
    plugin=editkit_ft, editor="ft", families=["gpt2"],
    invalid_hparams={"objective": ["everything"], "box": ["sphere"], "box_iters": ["0"], "linf": ["-1"]})
