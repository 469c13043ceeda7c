"""The first-party editor and null-space constraint pass the conformance suite they set the contract for."""

from __future__ import annotations

import editkit_memit
import editkit_nullspace

from editkit.testing.conformance import make_conformance_tests

TestMemitConformance = make_conformance_tests(plugin=editkit_memit, editor="memit", families=["gpt2"],
                                              invalid_hparams={"v_lr": ["0"], "v_steps": ["-3"]})
TestNullspaceConformance = make_conformance_tests(plugin=editkit_nullspace, constraint="nullspace", families=["llama"],
                                                  invalid_hparams={"threshold": ["0"], "mode": ["sideways"]})
