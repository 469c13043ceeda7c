"""The ft editor: its trajectory equals FT-L's reference code (Adam on the weight itself, L∞ clamp after every
step) written here independently, and its per-step constraint (box, subspace, Dykstra's alternation) does what
editkit_ft.projection says."""

from __future__ import annotations

import copy

import editkit_ft
import pytest
import torch
from editkit_ft.projection import box_projection, dykstra

from editkit.testing.harness import plugin_host, run_edit
from editkit.testing.tiny import tiny_model, tiny_requests, tiny_tokenizer
from editkit.updates import Subspace


def reference_ft(model, tok, module, requests, *, lr, steps, linf, objective, early_stop=1e-2, projector=None):
    """ROME's baselines/ft/ft_main.py, one chunk: Adam on W, per-request mean NLL of the target tokens, skip the
    step below early_stop, clamp W to W0 ± ε after it, stop when the epoch's loss is below early_stop.

    ``projector`` (P ``[d_in, d_in]``; GPT-2's Conv1D stores Wᵀ, so ΔP in math layout is P·(W − W0) here): the
    gradient is projected before the step and the change after the clamp — projected Adam."""
    ref = copy.deepcopy(model)
    weight = ref.get_submodule(module).weight
    weight.requires_grad_(True)
    w0 = weight.detach().clone()
    opt = torch.optim.Adam([weight], lr=lr)
    for _ in range(steps):
        losses = []
        for r in requests:
            prompt = tok(r.filled_prompt)["input_ids"]
            full = tok(r.filled_prompt + r.target_new)["input_ids"]
            assert full[: len(prompt)] == prompt
            if objective == "prompt_last":
                logp = torch.log_softmax(ref(input_ids=torch.tensor([prompt])).logits[0, -1], -1)
                losses.append(-logp[full[len(prompt):]].mean())
            else:
                logp = torch.log_softmax(ref(input_ids=torch.tensor([full[:-1]])).logits[0], -1)
                losses.append(-torch.stack([logp[t - 1, full[t]] for t in range(len(prompt), len(full))]).mean())
        loss = torch.stack(losses).mean()
        if loss.item() >= early_stop:
            opt.zero_grad()
            loss.backward()
            if projector is not None:
                weight.grad = projector @ weight.grad
            opt.step()
        with torch.no_grad():
            weight.copy_(torch.clamp(weight, w0 - linf, w0 + linf))
            if projector is not None:
                weight.copy_(w0 + projector @ (weight - w0))
        if loss.item() < early_stop:
            break
    return weight.detach()


@pytest.mark.parametrize("objective", ["prompt_last", "target_new"])
def test_ft_follows_the_reference_ft_l_trajectory(objective):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=3, d_model=32, d_mlp=64, logit_scale=20.0).double()
    requests = tiny_requests(2)
    module = "transformer.h.1.mlp.c_proj"
    settings = {"lr": 1e-2, "steps": 6, "linf": 3e-3}
    expected = reference_ft(model, tok, module, requests, objective=objective, **settings)
    ours = copy.deepcopy(model)
    run_edit(model=ours, tokenizer=tok, requests=requests, host=plugin_host(editkit_ft), editor="ft", layers=[1],
             overrides={**{f"ft.{k}": str(v) for k, v in settings.items()}, "ft.objective": objective})
    written = ours.get_submodule(module).weight.detach()
    # float64; Adam divides by √v + ε, so entries whose gradient is near ε turn round-off (the hook adds x Δᵀ, the
    # reference multiplies by W + Δ) into step differences of ~1e-8 over 6 steps of lr 1e-2; a wrong loss, step or
    # clamp differs by ~lr = 1e-2
    torch.testing.assert_close(written, expected, rtol=0, atol=1e-6)
    change = (written - model.get_submodule(module).weight.detach()).abs()
    assert float(change.max()) == pytest.approx(3e-3, rel=1e-9)  # the clamp bound some entries
    assert int((change > 0).sum()) > change.numel() // 2  # and the update is not confined to a few


def test_ft_with_the_null_space_is_projected_adam():
    """With --constraint nullspace the solve is Adam on the projected gradient, each step clamped then projected:
    the same trajectory as the reference above with P from the run's own null-space constraint."""
    from editkit.testing.moments import MomentsFromText
    from editkit.testing.tiny import tiny_texts

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=3, d_model=32, d_mlp=64, logit_scale=20.0).double()
    requests = tiny_requests(2)
    module = "transformer.h.1.mlp.c_proj"
    settings = {"lr": 1e-2, "steps": 6, "linf": 3e-3}
    ours = copy.deepcopy(model)
    outcome = run_edit(model=ours, tokenizer=tok, requests=requests, host=plugin_host(editkit_ft), editor="ft",
                       layers=[1], constraints=("nullspace",),
                       key_statistics=MomentsFromText(model=ours, tokenizer=tok, texts=tiny_texts()),
                       overrides={f"ft.{k}": str(v) for k, v in settings.items()})
    nullspace = next(p for spec, p in outcome.run.constraints if spec.name == "nullspace")
    projector = nullspace.subspace(outcome.run, outcome.sites[0]).matrix(torch.float64)
    assert 0 < float(projector.trace()) < projector.shape[0] - 0.5
    expected = reference_ft(model, tok, module, requests, objective="prompt_last", projector=projector, **settings)
    torch.testing.assert_close(ours.get_submodule(module).weight.detach(), expected, rtol=0, atol=1e-6)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(5, 9, generator=g, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(9, 4, generator=g, dtype=torch.float64))
    offset = torch.randn(5, 9, generator=g, dtype=torch.float64) * 0.1
    return delta, Subspace(basis=basis, kind="range"), offset


def test_box_alone_is_the_elementwise_clamp_around_the_reference(problem):
    delta, _, offset = problem
    out = dykstra(delta, box_projection(offset, 0.3), None, rounds=5)
    torch.testing.assert_close(out, torch.clamp(offset + delta, -0.3, 0.3) - offset, rtol=0, atol=0)
    assert float((offset + out).abs().max()) <= 0.3 + 1e-15


def test_one_round_is_clamp_then_project_and_keeps_dp_equal_d(problem):
    delta, sub, _ = problem
    box = box_projection(0.0, 0.3)
    out = dykstra(delta, box, sub.project_rows, rounds=1)
    torch.testing.assert_close(out, sub.project_rows(box(delta)), rtol=0, atol=1e-15)
    assert float((out - sub.project_rows(out)).norm() / out.norm()) < 1e-13


def test_more_rounds_approach_the_intersection_and_stay_in_the_subspace(problem):
    delta, sub, _ = problem
    box = box_projection(0.0, 0.3)
    once = dykstra(delta, box, sub.project_rows, rounds=1)
    many = dykstra(delta, box, sub.project_rows, rounds=2000)
    assert float((many - sub.project_rows(many)).norm() / many.norm()) < 1e-13  # ΔP = Δ exactly
    violation_once = float(once.abs().max()) - 0.3
    violation_many = float(many.abs().max()) - 0.3
    assert violation_once > 0.05  # one round leaves the box visibly
    assert violation_many < 1e-4 * violation_once
    # 0 lies in both sets: the projection onto the intersection is no farther from Δ than 0 is
    assert float((many - delta).norm()) <= float(delta.norm())
