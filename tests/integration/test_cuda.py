"""On a CUDA device (skipped without one): the kernel and the constraints with the model on the GPU while key
statistics, bases and editor outputs live on the CPU — the mix a real run has. Found by the first GPU run
of the sequential protocol: the null-space invariant's measurement multiplied a CUDA Δ by a CPU basis."""

from __future__ import annotations

import pytest
import torch

from editkit import EditRun, RunConfig
from editkit.plugins import PluginHost
from editkit.requests import EditRequest
from editkit.testing.fixed import fixed_editor_plugin
from editkit.testing.moments import KnownSpectrum
from editkit.testing.tiny import tiny_model, tiny_tokenizer
from editkit.updates import Subspace

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none present)")]

D_MODEL, D_MLP = 16, 48
REQUEST = EditRequest(case_id=0, subject="a", prompt="{} is", target_new="b", target_true="c")


def test_project_rows_follows_the_update_to_its_device():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(D_MLP, 8, generator=g, dtype=torch.float64))
    delta = torch.randn(D_MODEL, D_MLP, generator=g, dtype=torch.float64)
    for kind in ("range", "complement"):
        sub = Subspace(basis=basis, kind=kind)
        on_gpu = sub.project_rows(delta.cuda())
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), sub.project_rows(delta), atol=1e-12)


@pytest.mark.parametrize("constraints,overrides", [
    (("nullspace",), {}),
    (("nullspace",), {"nullspace.mode": "project"}),
    (("prune",), {"prune.mode": "every_batch"}),
    (("rect", "nullspace"), {"nullspace.mode": "joint"}),
    (("betaedit",), {"betaedit.refresh_every": "1", "betaedit.abort_norm": "0"}),  # P refreshed on the GPU
])
@pytest.mark.parametrize("mode", ["inline", "posthoc"])
def test_constraints_run_and_hold_with_the_model_on_cuda(constraints, overrides, mode):
    g = torch.Generator().manual_seed(11)
    updates = [{layer: torch.randn(D_MODEL, D_MLP, generator=g, dtype=torch.float64) for layer in (0, 1)}
               for _ in range(2)]
    basis, _ = torch.linalg.qr(torch.randn(D_MLP, D_MLP, generator=g, dtype=torch.float64))
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), n_layers=2, d_model=D_MODEL, d_mlp=D_MLP, seed=1).cuda()
    config = RunConfig(editor="fixed", constraints=constraints, overrides=overrides, constrain_mode=mode,
                       device="cuda")
    run = EditRun(model=model, tokenizer=tok, config=config,
                  host=PluginHost(plugins=[("fixed", fixed_editor_plugin(updates))]),
                  key_statistics=KnownSpectrum(basis, rank=16))
    w0 = {name: w.detach().clone() for name, w in run.initial_weights.items()}
    for _ in range(2):
        report = run.edit([REQUEST])
        for layer in (0, 1):
            checks = [v for k, v in report.layers[layer].items() if k.endswith(".invariant")]
            assert checks and all(c["holds"] for c in checks), report.layers[layer]
    run.finish()
    assert all(run.weight(site).device.type == "cuda" for site in run.sites)
    run.undo_last(len(run.undo_log))
    assert all(torch.equal(run.model.get_submodule(m).weight.detach(), w) for m, w in w0.items())
