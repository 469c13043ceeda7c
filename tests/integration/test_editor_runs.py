"""rome, emmet and ft through the real kernel on tiny models: ROME's batch = sequential rank-one edits, its answer
to two edits of one subject and relation in a batch, EMMET's dependent keys, FT with the null space keeping
ΔP = Δ (measured on the written weights), and each editor composed with rect and prune."""

from __future__ import annotations

import warnings

import editkit_emmet
import editkit_ft
import editkit_prune
import editkit_rect
import editkit_rome
import pytest
import torch
from editkit_emmet.editor import DependentKeysWarning
from editkit_rome.editor import OverwriteWarning

from editkit.errors import UsageError
from editkit.requests import EditBatch, EditRequest
from editkit.testing.harness import build_run, plugin_host, run_edit
from editkit.testing.moments import MomentsFromText
from editkit.testing.tiny import TINY_DIMS, tiny_model, tiny_requests, tiny_texts, tiny_tokenizer
from editkit.updates import SolveProblem

# tiny-model v* for ROME, as in the conformance tests
ROME = {"rome.layers": "1", "rome.clamp_norm_factor": "50", "rome.v_weight_decay": "1e-4"}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def fresh(tok, family="gpt2"):
    model = tiny_model(family, vocab_size=len(tok), logit_scale=20.0, **TINY_DIMS)
    return model, MomentsFromText(model=model, tokenizer=tok, texts=tiny_texts())


def host():
    return plugin_host(editkit_rome, editkit_emmet, editkit_ft, editkit_rect, editkit_prune)


def edit(tok, editor, requests, batch_size, constraints=(), overrides=None, family="gpt2"):
    model, stats = fresh(tok, family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_edit(model=model, tokenizer=tok, requests=requests, batch_size=batch_size, key_statistics=stats,
                           host=host(), editor=editor, constraints=constraints, overrides=overrides)
    return outcome, caught


def written(outcome):
    site = outcome.sites[0]
    return outcome.edited[site.weight_name].double() - outcome.initial[site.weight_name].double()


@pytest.mark.parametrize("constraints", [(), ("nullspace",)])
def test_a_rome_batch_is_its_requests_edited_one_after_another(tok, constraints):
    """A batch of N gives the weights N batches of one give: each request's v* is optimised on the model holding
    the earlier ones, and with the null space their keys join Cp (float32 weights: 1e-4 of the update)."""
    requests = tiny_requests(3)
    batched, _ = edit(tok, "rome", requests, 3, constraints, ROME)
    single, _ = edit(tok, "rome", requests, 1, constraints, ROME)
    a, b = written(batched), written(single)
    assert float((a - b).norm() / b.norm()) < 1e-4
    stale, _ = edit(tok, "rome", requests, 3, constraints, {**ROME, "rome.refresh_targets": "false"})
    assert float((written(stale) - b).norm() / b.norm()) > 1e-3  # the refresh is what makes them equal


def same_fact(tok):
    """Two requests for one subject and relation (same prompt), different targets."""
    return [EditRequest(case_id=f"c{i}", subject="Danielle Darrieux", prompt="The mother tongue of {}",
                        target_new=target, target_true="French") for i, target in enumerate(("English", "German"))]


def test_rome_same_subject_and_relation_the_later_request_overwrites_the_earlier(tok):
    """With batch-start targets the closed form shows it exactly: the two keys are one, and after both rank-one
    edits Δ k = r_later — the earlier request's constraint is gone."""
    model, stats = fresh(tok)
    run = build_run(model=model, tokenizer=tok, key_statistics=stats, host=host(), editor="rome",
                    overrides={**ROME, "rome.refresh_targets": "false"})
    site, batch = run.sites[0], EditBatch(index=0, requests=same_fact(tok))
    keys = run.pm.hook.editkit_collect_keys(run=run, batch=batch, site=site).double()
    residual = run.pm.hook.editkit_compute_residual(run=run, batch=batch, site=site, keys=keys, targets=None).double()
    torch.testing.assert_close(keys[:, 0], keys[:, 1])
    assert float((residual[:, 0] - residual[:, 1]).norm()) > 0.1 * float(residual.norm())  # different targets
    with pytest.warns(OverwriteWarning, match=r"case c1 \('German'\) overwrites case c0 \('English'\)"):
        delta = run.pm.hook.editkit_solve(run=run, batch=batch, site=site,
                                          problem=SolveProblem(keys=keys, residual=residual))
    torch.testing.assert_close(delta @ keys[:, 1], residual[:, 1], rtol=1e-6, atol=1e-8)


def test_rome_same_subject_and_relation_in_a_run_warns_notes_and_the_later_target_wins(tok):
    outcome, caught = edit(tok, "rome", same_fact(tok), 2, (), ROME)
    messages = [str(w.message) for w in caught if issubclass(w.category, OverwriteWarning)]
    assert len(messages) == 1 and "the earlier target does not survive" in messages[0]
    notes = outcome.run.reports[0].to_json()["layers"]["1"]
    assert notes["rome.overwritten"] == [["c0", "c1"]]
    english, german = outcome.after  # the same prompt scored for each request's own target
    assert german.new_logprob > english.new_logprob
    assert not english.success and german.success


def test_rome_bare_constraint_key_meets_the_constraint_at_the_bare_prompt(tok):
    model, stats = fresh(tok)
    run = build_run(model=model, tokenizer=tok, key_statistics=stats, host=host(), editor="rome",
                    overrides={**ROME, "rome.constraint_key": "bare"})
    site, batch = run.sites[0], EditBatch(index=0, requests=tiny_requests(1))
    keys = run.pm.hook.editkit_collect_keys(run=run, batch=batch, site=site).double()
    bare, _ = run.editor._bare(run, site, batch.requests)
    torch.testing.assert_close(keys, bare, rtol=1e-6, atol=1e-7)
    residual = run.pm.hook.editkit_compute_residual(run=run, batch=batch, site=site, keys=keys, targets=None).double()
    delta = run.pm.hook.editkit_solve(run=run, batch=batch, site=site, problem=SolveProblem(keys=keys,
                                                                                           residual=residual))
    torch.testing.assert_close(delta @ keys, residual, rtol=1e-6, atol=1e-8)
    # the direction is C0⁻¹k* (averaged key), not C0⁻¹k_b
    c0 = stats.second_moment(site)
    direction = torch.linalg.solve(c0, run.editor.targets(run, batch, site).average)
    assert float(torch.linalg.matrix_rank(torch.cat([delta.T, direction], dim=1), rtol=1e-6)) == 1


def test_rome_refuses_more_than_one_layer(tok):
    model, stats = fresh(tok)
    with pytest.raises(UsageError, match=r"ROME edits exactly one layer .* got \[1, 2\]"):
        build_run(model=model, tokenizer=tok, key_statistics=stats, host=host(), editor="rome", layers=[1, 2])


@pytest.mark.parametrize(("emmet_lambda", "solved_with"), [("0", "reduced"), ("0.1", "ridge")])
def test_emmet_dependent_keys_are_warned_and_the_notes_say_what_was_done(tok, emmet_lambda, solved_with):
    outcome, caught = edit(tok, "emmet", same_fact(tok), 2, (), {"emmet.emmet_lambda": emmet_lambda})
    messages = [str(w.message) for w in caught if issubclass(w.category, DependentKeysWarning)]
    assert len(messages) == 1 and "linearly dependent" in messages[0]
    said = "independent combination" if solved_with == "reduced" else "λ_E ridge"
    assert said in messages[0]
    notes = outcome.run.reports[0].to_json()["layers"]
    assert {n["emmet.solved_with"] for n in notes.values()} == {solved_with}


def test_ft_with_the_null_space_keeps_dp_equal_d_on_the_written_weights(tok):
    """Measured here from the weights before and after, with the null-space constraint's own P: each step is
    projected, so the written update stays in S_P (up to float32 storage of the weights); plain FT does not."""
    requests = tiny_requests(4)
    overrides = {"ft.lr": "1e-2", "ft.linf": "0", "ft.steps": "5"}
    constrained, _ = edit(tok, "ft", requests, 2, ("nullspace",), overrides)
    plain, _ = edit(tok, "ft", requests, 2, (), overrides)
    nullspace = next(p for spec, p in constrained.run.constraints if spec.name == "nullspace")
    for outcome in (constrained, plain):
        for site in outcome.sites:
            delta = outcome.edited[site.weight_name].double() - outcome.initial[site.weight_name].double()
            delta = delta.T if site.transposed else delta
            leak = float((delta - nullspace.subspace(constrained.run, site).project_rows(delta)).norm() / delta.norm())
            w = outcome.initial[site.weight_name]
            rounding = 2 * torch.finfo(w.dtype).eps * float(w.norm()) / float(delta.norm())
            if outcome is constrained:
                assert leak <= rounding + 1e-9, f"layer {site.layer}: ‖Δ − ΔP‖/‖Δ‖ = {leak:.2e}"
            else:
                assert leak > 0.1
    for report in constrained.run.reports:
        for layer, notes in report.to_json()["layers"].items():
            assert notes["nullspace.invariant"]["holds"], layer
            assert "nullspace.reprojected" not in notes  # the solve stayed inside: nothing to re-project


def test_ft_l_box_holds_on_the_written_weights_and_is_noted_as_approximate_with_the_null_space(tok):
    requests = tiny_requests(2)
    overrides = {"ft.lr": "1e-2", "ft.linf": "2e-3", "ft.steps": "4"}
    boxed, _ = edit(tok, "ft", requests, 2, (), overrides)
    site = boxed.sites[0]
    change = (boxed.edited[site.weight_name].double() - boxed.initial[site.weight_name].double()).abs()
    assert float(change.max()) <= 2e-3 + 1e-7  # float32 storage of W ± ε
    assert boxed.run.reports[0].to_json()["layers"][str(site.layer)]["ft.box"]["holds"]
    both, _ = edit(tok, "ft", requests, 2, ("nullspace",), overrides)
    box = both.run.reports[0].to_json()["layers"][str(site.layer)]["ft.box"]
    assert not box["holds"] and box["max_abs_change"] > 2e-3  # projecting after the clamp leaves the box
    tight, _ = edit(tok, "ft", requests, 2, ("nullspace",), {**overrides, "ft.box_iters": "200"})
    closer = tight.run.reports[0].to_json()["layers"][str(site.layer)]["ft.box"]["max_abs_change"]
    assert closer - 2e-3 < 0.1 * (box["max_abs_change"] - 2e-3)


@pytest.mark.parametrize("editor", ["rome", "emmet", "ft"])
@pytest.mark.parametrize("constraint", ["rect", "prune"])
def test_each_editor_composes_with_rect_and_prune(tok, editor, constraint):
    """RECT's mask and PRUNE's spectral map act on any editor's update (the DeltaProposal and the accumulated Δ_n):
    both act here (RECT keeps 40% of the entries; PRUNE rescales: ft runs unbounded so its Δ reaches σ_max(W0))."""
    overrides = {**(ROME if editor == "rome" else {}), **({"ft.lr": "5e-2", "ft.linf": "0"} if editor == "ft" else {})}
    outcome, _ = edit(tok, editor, tiny_requests(2), 2, (constraint,), overrides)
    assert float(written(outcome).abs().max()) > 0
    if constraint == "rect":
        notes = outcome.run.reports[0].to_json()["layers"]
        assert all(n["rect.invariant"]["holds"] and n["rect.invariant"]["value"] <= 0.41 for n in notes.values())
    else:
        final = outcome.run.final_report
        assert final is not None, "PRUNE did not act: the test needs an update above σ_max(W0)"
        notes = final.to_json()["layers"]
        assert all(n["prune.rescaled"] > 0 and n["prune.invariant"]["holds"] for n in notes.values())
