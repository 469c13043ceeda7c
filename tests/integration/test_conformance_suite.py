"""The conformance suite itself: a good plugin passes, deliberately broken copies fail saying what is wrong.

Broken plugins are registered in-process, exactly as a third-party package's would be; the checks are
run programmatically (``run_conformance``) and through pytest (``pytester``, the one-line enablement).
"""

from __future__ import annotations

import random
import textwrap
from typing import Any

import attrs
import editkit_memit
import pytest
import torch
from editkit_memit.editor import MemitStages

from editkit import ConstraintSpec, EditorSpec, hookimpl
from editkit.testing.conformance import (
    CHECKS,
    ConformanceSubject,
    make_conformance_tests,
    run_conformance,
)
from editkit.updates import DeltaProposal

pytest_plugins = ["pytester"]


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ScaleHParams:
    factor: float = attrs.field(default=0.5, validator=_positive)


@attrs.frozen(kw_only=True)
class LaxHParams:
    factor: float = 0.5  # no validator: accepts -1


class Scale:
    """A good constraint: Δ ↦ factor·Δ."""

    def __init__(self, hparams: Any) -> None:
        self.hparams = hparams

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            return proposal.with_delta(proposal.delta * self.hparams.factor)
        return None


class WritesNaN(Scale):
    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            return proposal.with_delta(proposal.delta * float("nan"))
        return None


class Leaks(Scale):
    """Adds a constant matrix: leaves every row subspace."""

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            return proposal.with_delta(proposal.delta + 1e-3 * float(proposal.delta.norm()))
        return None


class InPlace(Scale):
    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            proposal.delta.mul_(0.5)
        return None


class Meddles(Scale):
    """Also nudges the token embedding: a weight outside the located sites."""

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        with torch.no_grad():
            run.model.get_input_embeddings().weight.add_(1e-3)
        return None


class Nondeterministic(Scale):
    """Draws from Python's unseeded global RNG instead of run.generator."""

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            return proposal.with_delta(proposal.delta * (1 + random.random()))
        return None


class Forgets(Scale):
    """Shrinks each batch's update more than the last (a counter across batches) but journals nothing of it."""

    def __init__(self, hparams: Any) -> None:
        super().__init__(hparams)
        self.batches = 0

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, DeltaProposal):
            return proposal.with_delta(proposal.delta / (1 + self.batches))
        return None

    @hookimpl
    def editkit_batch_end(self, run, batch):
        self.batches += 1


class Remembers(Forgets):
    """The same counter, saved with each batch and restored: a resumed run continues exactly."""

    @hookimpl
    def editkit_save_state(self, run):
        return {"batches": torch.tensor(self.batches)}

    @hookimpl
    def editkit_load_state(self, run, states):
        self.batches = int(states[-1]["batches"]) if states else 0


class Untargeted(Scale):
    """Says it acts on target values but leaves them alone."""

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        return None


SHARED = Scale(ScaleHParams())


class TransposedSolve(MemitStages):
    @hookimpl
    def editkit_solve(self, run, batch, site, problem):
        return super().editkit_solve(run, batch, site, problem).T


class IgnoresSubspace(MemitStages):
    @hookimpl
    def editkit_solve(self, run, batch, site, problem):
        return super().editkit_solve(run, batch, site, attrs.evolve(problem, subspace=None))


class Registers:
    """A discovery plugin registering one spec, as a third-party package's module would."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @hookimpl
    def editkit_register_constraints(self, register):
        if isinstance(self.spec, ConstraintSpec):
            register(self.spec)

    @hookimpl
    def editkit_register_editors(self, register):
        if isinstance(self.spec, EditorSpec):
            register(self.spec)


def constraint(name: str, factory: Any, hparams: type = ScaleHParams, linear: bool = True,
               needs_targets: bool = False) -> ConformanceSubject:
    spec = ConstraintSpec(name=name, summary=f"test constraint {name}", factory=factory, hparams=hparams,
                          invariant="none", linear=linear, needs_targets=needs_targets)
    return ConformanceSubject(plugins=[(name, Registers(spec))], constraint=name, families=["gpt2"],
                              invalid_hparams={"factor": ["-1"]})


def editor(name: str, factory: Any) -> ConformanceSubject:
    spec = attrs.evolve(editkit_memit.EDITOR, name=name, factory=factory)
    return ConformanceSubject(plugins=[(name, Registers(spec))], editor=name, families=["gpt2"])


def test_a_good_constraint_passes_every_check():
    report = run_conformance(constraint("scale", Scale))
    assert [r.check for r in report.results] == list(CHECKS)
    report.assert_ok()
    assert {r.check: r.status for r in report.results}["light_import"] == "skipped"  # not a module


@pytest.mark.parametrize(
    ("subject", "checks", "messages"),
    [
        pytest.param(constraint("nan", WritesNaN), ["stage_contract", "written_update"],
                     ["constraint 'nan' on a tiny gpt2: layer 1: the constrained Δ for a typical update has 8192 "
                      "non-finite (NaN or inf) entries.",
                      "the edit run (--editor memit --constraint nan) failed, so the written update cannot be "
                      "checked: NumericalError: layer 1 (transformer.h.1.mlp.c_proj): non-finite constrained update"],
                     id="writes-nan"),
        pytest.param(constraint("leaks", Leaks, linear=False), ["composes_with_nullspace"],
                     ["run as `--editor memit --constraint nullspace --constraint leaks`: layer 1: the written update "
                      "leaves the null space of the preserved keys: ‖Δ − ΔP‖/‖Δ‖ = ",
                      "its transform of Δ does not commute with Δ ↦ ΔP. If that is intended, pass "
                      "commutes_with_nullspace=False"],
                     id="leaves-the-null-space"),
        pytest.param(constraint("inplace", InPlace), ["stage_contract"],
                     ["layer 1: editkit_constrain_update modified Δ in place (a typical update)"],
                     id="modifies-in-place"),
        pytest.param(constraint("meddles", Meddles), ["stage_contract", "untouched_outside_sites"],
                     ["calling editkit_constrain_update changed model weights (transformer.wte.weight (max |change| ",
                      "the run changed weights outside the located sites (transformer.h.1.mlp.c_proj.weight, "
                      "transformer.h.2.mlp.c_proj.weight): transformer.wte.weight (max |change| "],
                     id="touches-other-weights"),
        pytest.param(constraint("dice", Nondeterministic, linear=False), ["seed_determinism"],
                     ["two runs with seed 0 on the same model wrote different weights: transformer.h.1.mlp.c_proj."
                      "weight (max |change| ", "Draw randomness from run.generator"],
                     id="nondeterministic"),
        pytest.param(constraint("lax", Scale, hparams=LaxHParams), ["bad_hyperparameters"],
                     ["--set lax.factor=-1 was accepted; it must fail with a UsageError naming 'factor' (add a "
                      "validator to LaxHParams.factor)."],
                     id="unvalidated-hyperparameter"),
        pytest.param(constraint("forgets", Forgets), ["resume_exact"],
                     ["a run resumed after two batches wrote other weights in the third than one that never stopped",
                      "save in editkit_save_state everything the next batch depends on"],
                     id="state-not-journaled"),
        pytest.param(constraint("untargeted", Untargeted, needs_targets=True), ["stage_contract"],
                     ["declares needs_targets=True but left the TargetProposal unchanged"],
                     id="needs-targets-but-ignores-them"),
        pytest.param(constraint("shared", lambda hparams: SHARED), ["registration"],
                     ["the spec's factory returned the same object twice"], id="shared-stage-object"),
        pytest.param(editor("transposed", TransposedSolve), ["stage_contract", "written_update"],
                     ["editor 'transposed' on a tiny gpt2: layer 1: the update from editkit_solve has shape (128, 64); "
                      "the contract is (64, 128)",
                      "failed, so the written update cannot be checked: EditkitError: layer 1: update has shape "
                      "(128, 64), expected (64, 128)"],
                     id="solve-returns-the-wrong-shape"),
        pytest.param(editor("unrestricted", IgnoresSubspace), ["stage_contract", "composes_with_nullspace"],
                     ["editkit_solve ignored the problem's row subspace: ‖Δ − ΔP‖/‖Δ‖ = ",
                      "batch 0, layer 1: the null-space constraint had to re-project the solved update (it left the "
                      "subspace by ‖Δ − ΔP‖/‖Δ‖ = "],
                     id="solve-ignores-the-subspace"),
    ],
)
def test_a_broken_plugin_fails_saying_what_is_wrong(subject, checks, messages):
    report = run_conformance(subject, checks=checks)
    assert [r.status for r in report.results] == ["failed"] * len(checks), report.results
    text = "\n".join(r.message for r in report.failures)
    for message in messages:
        assert message in text


def test_state_saved_and_restored_passes_the_resume_check():
    run_conformance(constraint("remembers", Remembers), checks=["resume_exact", "undo_exact"]).assert_ok()


def test_one_line_enables_the_suite_and_pytest_shows_the_failure(pytester):
    pytester.makepyfile(test_broken=textwrap.dedent("""
        import attrs
        from editkit import ConstraintSpec, hookimpl
        from editkit.testing.conformance import make_conformance_tests
        from editkit.updates import DeltaProposal

        @attrs.frozen(kw_only=True)
        class NoHParams:
            pass

        class WritesNaN:
            def __init__(self, hparams):
                pass

            @hookimpl
            def editkit_constrain_update(self, run, site, proposal):
                if isinstance(proposal, DeltaProposal):
                    return proposal.with_delta(proposal.delta * float("nan"))

        class Plugin:
            @hookimpl
            def editkit_register_constraints(self, register):
                register(ConstraintSpec(name="nan", summary="writes NaN", factory=WritesNaN, hparams=NoHParams,
                                        invariant="none", linear=True))

        TestNaN = make_conformance_tests(plugin=Plugin(), constraint="nan", families=["gpt2"])
    """))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "registration or stage_contract", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "[[]stage_contract[]] constraint 'nan' on a tiny gpt2: layer 1: the constrained Δ for a typical update has "
        "8192 non-finite (NaN or inf) entries.",
        "FAILED test_broken.py::TestNaN::test_stage_contract[[]gpt2[]]*",
    ])


def test_the_generated_class_is_named_after_the_plugin_and_needs_a_name():
    cls = make_conformance_tests(plugin=Registers(None), constraint="my-clamp")
    assert cls.__name__ == "TestMyClampConformance"
    assert cls.conformance_subject.families == ("gpt2", "llama")
    with pytest.raises(ValueError, match="give constraint=NAME or editor=NAME"):
        make_conformance_tests(plugin=Registers(None))


def test_a_constraint_that_does_not_commute_with_the_projection_may_say_so():
    subject = attrs.evolve(constraint("leaks", Leaks, linear=False), commutes_with_nullspace=False)
    run_conformance(subject, checks=["composes_with_nullspace"]).assert_ok()  # nullspace after it re-projects
