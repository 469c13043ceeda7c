"""The v* optimisation: batched equals one-at-a-time, and one-at-a-time equals an independent
reference written here with torch.optim.Adam and full-model logits (v*: ROME §3,
MEMIT §4).

Tolerances. Where the computations are the same up to round-off they are compared in float64:
batched and one-at-a-time agree to 1e-10 with either padding side; implementation and reference to
1e-6 (Adam divides by √v + ε, so components whose gradient is near ε turn round-off into visible step
differences, and twelve clamped steps of lr 0.5 amplify 1e-16 to ~1e-7; a real difference in the
loss shows up at 1e-2 or more).

In float32 no fixed number is a test of editkit: the two sides use different BLAS blockings (batch
shapes differ), and how far the chaotic Adam trajectory carries the difference depends on the CPU's
kernels (measured 3e-3 with AVX-512, 1.3e-4 with AVX2 on the same problem). The float32 bound is
therefore derived from the problem itself (:func:`float32_bound`): by backward error analysis a float32
evaluation is the exact evaluation with operands perturbed by at most γ_n ≈ n·u relative (Higham,
*Accuracy and Stability of Numerical Algorithms*, Thm 3.5; n the longest reduction, u = 2⁻²⁴), so two
float32 evaluations differ by at most 2·n times the effect of a u-relative perturbation, which is
measured here in float64 (weights perturbed by u relative, three draws, the largest change of z).
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from editkit_memit.targets import VStarSettings, optimise_targets

from editkit.helpers.tokens import first_token_from, last_token_before, tokenize
from editkit.requests import EditRequest
from editkit.testing.tiny import tiny_model, tiny_tokenizer

SETTINGS = VStarSettings(lr=0.5, steps=12, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625, early_stop_loss=5e-2)
TEMPLATES = ("{}", "The quick brown fox. {}", "Because I. {}")
FACTS = [
    ("Danielle Darrieux", "The mother tongue of {} is", "English"),
    ("Toko Yasuda", "{} plays the", "football"),
    ("Edwin Hubble", "{} was an", "Italian"),
    ("Michael Jordan", "{} plays", "basketball player"),
    ("Lionel Messi", "The quick fox of {} is", "Dutch"),
]


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=48, d_mlp=96)
    for p in model.parameters():
        p.requires_grad_(False)
    requests = [EditRequest(case_id=i, subject=s, prompt=p, target_new=t) for i, (s, p, t) in enumerate(FACTS)]
    return model, tok, requests


@pytest.fixture(scope="module")
def float32_bound(setup):
    """2·n·(largest relative change of z under a u-relative perturbation of the weights), float64."""
    model, tok, requests = setup
    n = max(model.config.vocab_size, model.config.n_inner or 4 * model.config.n_embd, model.config.n_embd)
    u = 2.0**-24
    generator = torch.Generator().manual_seed(0)
    args = dict(block="transformer.h.1", requests=requests, templates=TEMPLATES, settings=SETTINGS,
                device=torch.device("cpu"), group_size=1)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model64 = copy.deepcopy(model).double()
        base = optimise_targets(model64, tok, **args).z
        weights = {k: v.clone() for k, v in model64.state_dict().items()}
        change = 0.0
        for _ in range(3):
            noisy = {k: v * (1 + u * (2 * torch.rand(v.shape, generator=generator, dtype=v.dtype) - 1))
                     for k, v in weights.items()}
            model64.load_state_dict(noisy)
            z = optimise_targets(model64, tok, **args).z
            change = max(change, float(((z - base).norm(dim=-1) / base.norm(dim=-1)).max()))
    finally:
        torch.set_default_dtype(previous)
    assert 0 < change < 1e-3, "the problem must be well enough conditioned for a float32 comparison to mean anything"
    return 2 * n * change


def reference_z(model, tok, request, block, settings, norm=None):
    """One request, written straight from the formulas; unbatched prompts, torch.optim.Adam. ``norm``: what the
    decay and the clamp are relative to (default ‖h_init‖; ROME passes ‖m_init‖)."""
    prompts, lookups, targets = [], [], []
    for template in TEMPLATES:
        before, _, after = template.replace("{}", request.prompt).partition("{}")
        text = before + request.subject + after
        full = text + request.target_new
        t = tokenize(tok, full)
        first = first_token_from(tok, full, len(text), t)
        prompts.append(torch.tensor([t.ids[:-1]]))
        lookups.append(last_token_before(tok, full, len(before) + len(request.subject), t))
        targets.append((first, list(t.ids)))
    kl_text = f"{request.subject} is a"
    kl_ids = torch.tensor([tokenize(tok, kl_text).ids])
    kl_pos = last_token_before(tok, kl_text, len(request.subject))
    delta = torch.zeros(model.config.n_embd, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=settings.lr)
    state = {}

    def hook(module, args, output, pos_holder=state):
        h = output[0] if isinstance(output, tuple) else output
        pos = pos_holder["pos"]
        if "h_init" not in pos_holder:
            pos_holder["h_init"] = h[0, pos].detach().clone()
        h = h.clone()
        h[0, pos] = h[0, pos] + delta
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = model.get_submodule(block).register_forward_hook(hook)
    try:
        kl_init = None
        for it in range(settings.steps):
            nlls = []
            for ids, pos, (first, full) in zip(prompts, lookups, targets):
                state["pos"] = pos
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
                toks = [-logp[t - 1, full[t]] for t in range(first, len(full))]
                nlls.append(torch.stack(toks).mean())
            state["pos"] = kl_pos
            kl_logp = torch.log_softmax(model(input_ids=kl_ids).logits[0, kl_pos].float(), -1)
            if kl_init is None:
                kl_init = kl_logp.detach()
            kl = (kl_logp.exp() * (kl_logp - kl_init)).sum()
            h_init = state["h_init"]
            scale = h_init.norm() if norm is None else torch.tensor(norm, dtype=h_init.dtype)
            decay = settings.weight_decay * delta.norm() / scale**2
            loss = torch.stack(nlls).mean() + settings.kl_factor * kl + decay
            if loss.item() < settings.early_stop_loss or it == settings.steps - 1:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                limit = settings.clamp_norm * scale
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    finally:
        handle.remove()
    return (state["h_init"] + delta).detach()


def test_one_at_a_time_equals_independent_reference(setup, float32_bound):
    model, tok, requests = setup
    block = "transformer.h.1"
    for request in requests[:3]:
        ours = optimise_targets(model, tok, block=block, requests=[request], templates=TEMPLATES, settings=SETTINGS,
                                device=torch.device("cpu"), group_size=1).z[0]
        ref = reference_z(model, tok, request, block, SETTINGS)
        assert float((ours - ref).norm() / ref.norm()) < float32_bound


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batched_equals_one_at_a_time(setup, padding_side, float32_bound):
    model, tok, requests = setup
    tok.padding_side = padding_side
    try:
        args = dict(block="transformer.h.1", requests=requests, templates=TEMPLATES, settings=SETTINGS,
                    device=torch.device("cpu"))
        batched = optimise_targets(model, tok, group_size=0, **args)
        single = optimise_targets(model, tok, group_size=1, **args)
    finally:
        tok.padding_side = "right"
    assert batched.steps == single.steps
    rel = (batched.z - single.z).norm(dim=-1) / single.z.norm(dim=-1)
    assert float(rel.max()) < float32_bound
    # the optimisation did something: δ is non-zero for every request
    assert bool(((batched.z - batched.h_init).norm(dim=-1) > 0).all())


def test_early_stopped_requests_keep_their_delta(setup):
    model, tok, requests = setup
    loose = VStarSettings(lr=0.5, steps=12, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625, early_stop_loss=1e9)
    out = optimise_targets(model, tok, block="transformer.h.1", requests=requests, templates=TEMPLATES, settings=loose,
                           device=torch.device("cpu"))
    assert out.steps == (0,) * len(requests)  # stopped before the first step
    assert torch.equal(out.z, out.h_init)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_float64_agreement(setup, padding_side):
    """Same comparisons in float64 (see the module docstring): reference and batched both to 1e-6."""
    model, tok, requests = setup
    model64 = model.double()
    tok.padding_side = padding_side
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        block = "transformer.h.1"
        for request in requests[:2]:
            ours = optimise_targets(model64, tok, block=block, requests=[request], templates=TEMPLATES,
                                    settings=SETTINGS, device=torch.device("cpu"), group_size=1).z[0]
            ref = reference_z(model64, tok, request, block, SETTINGS)
            assert float((ours - ref).norm() / ref.norm()) < 1e-6
        args = dict(block=block, requests=requests, templates=TEMPLATES, settings=SETTINGS, device=torch.device("cpu"))
        batched = optimise_targets(model64, tok, group_size=0, **args)
        single = optimise_targets(model64, tok, group_size=1, **args)
        assert float(((batched.z - single.z).norm(dim=-1) / single.z.norm(dim=-1)).max()) < 1e-10
    finally:
        tok.padding_side = "right"
        torch.set_default_dtype(previous)
        model.float()


def test_norm_reference_replaces_h_init_in_decay_and_clamp(setup):
    """ROME's v*: decay and clamp relative to a given norm (‖m_init‖) instead of ‖h_init‖; float64, against the
    reference, and the clamp binds at c·norm."""
    model, tok, requests = setup
    model64 = model.double()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        block = "transformer.h.1"
        for request in requests[:2]:
            args = dict(block=block, requests=[request], templates=TEMPLATES, settings=SETTINGS,
                        device=torch.device("cpu"), group_size=1)
            out = optimise_targets(model64, tok, norm_reference=[0.05], **args)
            ref = reference_z(model64, tok, request, block, SETTINGS, norm=0.05)
            assert float((out.z[0] - ref).norm() / ref.norm()) < 1e-6
            shift = float((out.z[0] - out.h_init[0]).norm())
            assert shift == pytest.approx(SETTINGS.clamp_norm * 0.05, rel=1e-9)  # the clamp binds at c·0.05
            default = optimise_targets(model64, tok, **args).z[0]
            assert float((default - out.h_init[0]).norm()) > 1.2 * shift  # relative to ‖h_init‖ the clamp allows more
        with pytest.raises(ValueError, match="norm_reference has 1 values for 2 requests"):
            optimise_targets(model64, tok, block=block, requests=requests[:2], templates=TEMPLATES, settings=SETTINGS,
                             device=torch.device("cpu"), norm_reference=[1.0])
    finally:
        torch.set_default_dtype(previous)
        model.float()


@pytest.mark.parametrize("early_stop", [5e-2, "median"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_upper_stack_equals_full_forward(family, early_stop):
    """Steps through blocks L+1..end only, or over the columns from the subject on with a cached
    prefix, give the same z as full forwards (float64, rel 1e-5)."""
    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    tok = tiny_tokenizer(padding_side="left" if family == "llama" else "right")
    model = tiny_model(family, vocab_size=len(tok), n_layers=4, d_model=48, d_mlp=96).double()
    for p in model.parameters():
        p.requires_grad_(False)
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    facts = [*FACTS, ("A", "{} is the capital of", "France")]  # one-token subject at column 0: empty prefix rows
    requests = [EditRequest(case_id=i, subject=s, prompt=p, target_new=t) for i, (s, p, t) in enumerate(facts)]
    assert len(tok("A").input_ids) == 1
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = {}
        if early_stop == "median":  # a threshold some requests reach before the last step and some don't
            settings = VStarSettings(lr=0.5, steps=1, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                                     early_stop_loss=5e-2, forward="full")
            losses = optimise_targets(  # the losses at δ = 0
                model, tok, block=layout.blocks[1], requests=requests, templates=TEMPLATES,
                                      settings=settings, device=torch.device("cpu")).final_loss
            early_stop = sorted(losses)[len(losses) // 2] + 1e-9
        for name, mode, where in [("full", "full", layout), ("upper", "upper", layout), ("suffix", "suffix", layout),
                                  ("auto", "auto", layout), ("suffix, whole model", "suffix", None)]:
            settings = VStarSettings(lr=0.5, steps=8, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                                     early_stop_loss=early_stop, forward=mode)
            out[name] = optimise_targets(model, tok, block=layout.blocks[1], requests=requests, templates=TEMPLATES,
                                         settings=settings, device=torch.device("cpu"), layout=where)
    finally:
        torch.set_default_dtype(previous)
    if early_stop > 5e-2:  # requests leave the batch at different steps: row subsets are exercised
        assert len(set(out["full"].steps)) > 1
    for mode in ("upper", "suffix", "auto", "suffix, whole model"):
        rel = (out[mode].z - out["full"].z).norm(dim=-1) / out["full"].z.norm(dim=-1)
        assert float(rel.max()) < 1e-5, mode
        assert out[mode].steps == out["full"].steps, mode


@pytest.mark.parametrize("with_layout", [True, False])
def test_suffix_forward_runs_only_the_columns_from_the_subject(with_layout):
    from editkit_memit.targets import _build_prompts
    from editkit_memit.upper import SuffixForward, make_forward

    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=48, d_mlp=96)
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    requests = [EditRequest(case_id=i, subject=s, prompt=p, target_new=t) for i, (s, p, t) in enumerate(FACTS)]
    prompts = _build_prompts(tok, requests, TEMPLATES, torch.device("cpu"), left=True)
    split = int(prompts.lookup.min())
    forward = make_forward(model, layout if with_layout else None, 1, layout.blocks[1],
                           prompts.batch.model_inputs(), "auto", split)
    assert isinstance(forward, SuffixForward) and forward.offset == split > 0
    assert (forward.upper is not None) == with_layout  # blocks 0..L skipped too when the layout is known
    rows = torch.tensor([0, 2, 3])
    with torch.no_grad():
        base, hidden = forward(rows, lambda h: h)
        full = model.base_model(**prompts.batch.rows(rows).model_inputs(), use_cache=False).last_hidden_state
    width = prompts.batch.input_ids.shape[1]
    assert hidden.shape == base.shape == (3, width - split, 48)
    torch.testing.assert_close(hidden, full[:, split - width + full.shape[1]:], rtol=1e-4, atol=1e-5)


def test_suffix_groups_partition_by_width_and_leave_z_unchanged():
    from editkit_memit.targets import _build_prompts, suffix_groups

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=3, d_model=32, d_mlp=64).double()
    for p in model.parameters():
        p.requires_grad_(False)
    facts = [*FACTS, ("Ada Lovelace", "{} wrote about", "engines and looms"), ("Alan Turing", "{} is", "a")]
    requests = [EditRequest(case_id=i, subject=s, prompt=p, target_new=t) for i, (s, p, t) in enumerate(facts)]
    groups = suffix_groups(tok, requests, TEMPLATES, min_group=1)
    assert sorted(i for g in groups for i in g) == list(range(len(requests))) and len(groups) > 1
    prompts = _build_prompts(tok, requests, TEMPLATES, torch.device("cpu"), left=True)
    width = prompts.batch.input_ids.shape[1] - prompts.lookup
    widest = [max(int(w) for w, r in zip(width, prompts.row_request) if int(r) in g) for g in groups]
    assert widest == sorted(widest)  # shortest suffixes first
    assert [sorted(g) for g in suffix_groups(tok, requests, TEMPLATES, min_group=100)] == [list(range(len(requests)))]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        settings = VStarSettings(lr=0.5, steps=5, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                                 early_stop_loss=5e-2, forward="suffix")
        args = dict(block="transformer.h.1", requests=requests, templates=TEMPLATES, settings=settings,
                    device=torch.device("cpu"))
        advances = []
        grouped = optimise_targets(model, tok, min_group=1, on_step=lambda a, n: advances.append(a), **args)
        whole = optimise_targets(model, tok, min_group=100, **args)
    finally:
        torch.set_default_dtype(previous)
    assert float(((grouped.z - whole.z).norm(dim=-1) / whole.z.norm(dim=-1)).max()) < 1e-10
    assert grouped.steps == whole.steps
    assert abs(sum(advances) - 5) < 1e-9  # a progress bar of `steps` fills exactly once


def test_width_segments_partition_rows_narrowest_first_and_merge_small_ones():
    from editkit_memit.targets import _rows, width_segments

    tok = tiny_tokenizer()
    facts = [*FACTS, ("Ada Lovelace", "{} wrote about", "engines and looms")]
    requests = [EditRequest(case_id=i, subject=s, prompt=p, target_new=t) for i, (s, p, t) in enumerate(facts)]
    rows = _rows(tok, requests, TEMPLATES)
    assert all(row.width == 1 for row in rows if row.is_kl)  # the KL prompt ends at the subject's last token
    exact = width_segments(rows, merge_columns=0)
    assert sorted(i for seg in exact for i in seg) == list(range(len(rows)))
    assert all(len({rows[i].width for i in seg}) == 1 for seg in exact)  # one width per segment
    widths = [rows[seg[0]].width for seg in exact]
    assert widths == sorted(set(widths)) and len(widths) > 2
    merged = width_segments(rows, merge_columns=10**6)
    assert merged == [sorted(range(len(rows)), key=lambda i: (rows[i].width, i))]  # one segment, narrowest first
    some = width_segments(rows, merge_columns=3)
    assert 1 < len(some) < len(exact)
    for seg, following in itertools.pairwise(some):  # a segment kept apart would have paid more than 3 columns
        assert sum(rows[following[0]].width - rows[i].width for i in seg) > 3


def test_suffix_steps_run_each_row_on_its_own_columns(setup, monkeypatch):
    """With exact segments a step runs block L+1 on Σ_rows width columns: the rows' own, none of a wider row's."""
    import editkit_memit.targets as targets

    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    model, tok, requests = setup
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    monkeypatch.setattr(targets, "SEGMENT_COLUMNS", 0)
    rows = targets._rows(tok, requests, TEMPLATES)
    seen = []
    handle = model.get_submodule(layout.blocks[2]).register_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape[0] * args[0].shape[1]))
    try:
        columns = {}
        for steps in (2, 3):
            seen.clear()
            settings = VStarSettings(lr=0.5, steps=steps, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                                     early_stop_loss=0.0, forward="suffix")
            optimise_targets(model, tok, block=layout.blocks[1], requests=requests, templates=TEMPLATES,
                             settings=settings, device=torch.device("cpu"), layout=layout, min_group=100)
            columns[steps] = sum(seen)
    finally:
        handle.remove()
    assert columns[3] - columns[2] == sum(row.width for row in rows)  # one more step


def test_bfloat16_autocast_stays_close_to_float32(setup):
    """The opt-in bf16 autocast of the steps reaches the same losses (to 1e-3 relative) in the same steps. z itself is
    not compared: on this random tiny model the gradients are near Adam's ε, where bf16 rounding turns the step's
    direction (22% of δ for one request); SmolLM2's figures are in benchmarks/bench_smollm2_speed.py."""
    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    model, tok, requests = setup
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    out = {}
    for mode in ("none", "bfloat16"):
        settings = VStarSettings(lr=0.5, steps=8, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                                 early_stop_loss=5e-2, autocast=mode)
        out[mode] = optimise_targets(model, tok, block=layout.blocks[1], requests=requests, templates=TEMPLATES,
                                     settings=settings, device=torch.device("cpu"), layout=layout)
    assert out["bfloat16"].steps == out["none"].steps
    for ours, full in zip(out["bfloat16"].final_loss, out["none"].final_loss):
        assert abs(ours - full) < 1e-3 * full
    assert not torch.equal(out["bfloat16"].z, out["none"].z)  # bf16 did run
    with pytest.raises(ValueError):
        VStarSettings(lr=0.5, steps=1, weight_decay=0, clamp_norm=1, kl_factor=0, early_stop_loss=0, autocast="fp8")


def test_the_suffix_self_check_runs_once_per_call(setup, monkeypatch):
    """Segments of one call share the model and layer: the first suffix forward's self-check decides for all."""
    import editkit_memit.targets as targets
    import editkit_memit.upper as upper

    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    model, tok, requests = setup
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    monkeypatch.setattr(targets, "SEGMENT_COLUMNS", 0)
    checks = []
    original = upper.check_rows
    monkeypatch.setattr(upper, "check_rows", lambda mask: checks.append(1) or original(mask))
    settings = VStarSettings(lr=0.5, steps=2, weight_decay=0.5, clamp_norm=0.75, kl_factor=0.0625,
                             early_stop_loss=5e-2, forward="suffix")
    optimise_targets(model, tok, block=layout.blocks[1], requests=requests, templates=TEMPLATES, settings=settings,
                     device=torch.device("cpu"), layout=layout, min_group=100)
    assert len(targets.width_segments(targets._rows(tok, requests, TEMPLATES), 0)) > 2
    assert checks == [1]


def test_each_group_hands_back_what_it_freed_before_the_next_group(setup, monkeypatch):
    import editkit_memit.targets as targets

    model, tok, requests = setup
    events: list[str] = []
    optimise_group = targets._optimise_group
    monkeypatch.setattr(targets, "_optimise_group", lambda *a, **k: events.append("group") or optimise_group(*a, **k))
    monkeypatch.setattr(targets, "release_free_memory", lambda: events.append("release") or True)
    optimise_targets(model, tok, block="transformer.h.1", requests=requests, templates=TEMPLATES, settings=SETTINGS,
                     device=torch.device("cpu"), group_size=2)  # 5 requests: groups of 2, 2 and 1
    assert events == ["group", "release"] * 3
