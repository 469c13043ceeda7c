"""Settings that looked valid and were not: a third-party plugin named like a first-party one, generation past a
short context, non-finite and out-of-set hyperparameters, a null space that is the whole space, a CPU index that
does not exist, and a preset mixed with a dataset's calibrated defaults."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
import warnings

import attrs
import pytest
import torch

from editkit import hookimpl
from editkit.catalog import DatasetSpec
from editkit.config import RunConfig
from editkit.errors import UsageError
from editkit.plugins import PluginHost

# ---------------------------------------------------------------------- a plugin named like a first-party one


@pytest.fixture
def impostors(tmp_path, monkeypatch):
    """An installed-looking distribution, first on sys.path, with an entry point ``memit`` (an editor of that name)
    and a second entry point ``nsalias`` of the first-party module ``editkit_nullspace``."""
    (tmp_path / "editkit_impostor_memit.py").write_text(textwrap.dedent('''
        import attrs
        from editkit import hookimpl
        from editkit_memit import EDITOR

        @hookimpl
        def editkit_register_editors(register):
            register(attrs.evolve(EDITOR, summary="not the first-party MEMIT"))
    '''))
    dist = tmp_path / "other_package-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other-package\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text("[editkit]\nmemit = editkit_impostor_memit\nnsalias = editkit_nullspace\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert next(ep.dist.name for ep in md.entry_points(group="editkit") if ep.name == "memit") == "other-package"
    yield
    sys.modules.pop("editkit_impostor_memit", None)


def test_a_third_party_entry_point_named_memit_does_not_replace_the_first_party_editor(impostors):
    host = PluginHost()
    info = {i.name: i for i in host.info()}
    assert info["memit"].distribution == "editkit" and info["memit"].module == "editkit_memit"
    assert host.catalog.get("editors", "memit").summary != "not the first-party MEMIT"
    assert host.origin("editors", "memit") == {"name": "memit", "plugin": "memit", "distribution": "editkit",
                                               "version": md.version("editkit")}
    failures = {f.name: f for f in host.failures}
    assert failures["memit"].phase == "name" and failures["memit"].distribution == "other-package"
    line = failures["memit"].describe()
    assert "\n" not in line
    for text in ("'memit' from other-package 9.9 (editkit_impostor_memit) is ignored",
                 "'memit' (first-party) from editkit", "(editkit_memit)",
                 "EDITKIT_DISABLE_PLUGINS=other-package:memit"):
        assert text in line, line


def test_a_second_entry_point_of_a_first_party_module_warns_in_one_line_without_disabling_it(impostors):
    host = PluginHost()
    [failure] = [f for f in host.failures if f.name == "nsalias"]
    line = failure.describe()
    assert failure.phase == "module" and "\n" not in line and "{" not in line and "<module" not in line, line
    for text in ("'nsalias' from other-package 9.9 (editkit_nullspace) is ignored",
                 "already loaded as plugin 'nullspace' (first-party) from editkit", "EDITKIT_DISABLE_PLUGINS=nsalias"):
        assert text in line, line
    assert "EDITKIT_DISABLE_PLUGINS=nullspace" not in line
    assert host.catalog.providers[("constraints", "nullspace")] == "nullspace"
    assert "nullspace" not in {f.name for f in host.failures}


def test_the_advice_skips_the_third_party_entry_point_only(impostors, monkeypatch):
    monkeypatch.setenv("EDITKIT_DISABLE_PLUGINS", "other-package:memit,nsalias")
    host = PluginHost()
    assert host.failures == []
    assert {"memit", "nullspace"} <= {i.name for i in host.info()}
    assert host.origin("editors", "memit")["distribution"] == "editkit"


# ---------------------------------------------------------------------- generation inside a short context


def short_gpt2(n_positions: int):
    import transformers

    from editkit.testing.tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    config = tiny_config("gpt2", len(tok))
    config.n_positions = n_positions
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    return model, tok


PROMPTS = ["The mother tongue of Danielle Darrieux is", "A", "Paris is the capital of a country where people speak"]
# 19, 1 and 30 tokens with the tiny tokenizer


def test_fluency_on_a_short_context_cuts_generation_and_counts_it():
    from editkit_metrics.fluency import fluency_and_consistency

    from editkit.evaluation import EvalContext

    model, tok = short_gpt2(24)
    records = [{"generation_prompts": PROMPTS, "requested_rewrite": {"target_new": {"str": "x"}}}]
    figures = fluency_and_consistency(EvalContext(model=model, tokenizer=tok, records=records, extras={},
                                                  generation_length=8))
    assert figures["fluency_truncated_generations"] == 2  # 19 + 8 > 24; 30 > 24 leaves no room; 1 + 8 fits
    assert figures["fluency"] > 0
    roomy, tok = short_gpt2(128)
    figures = fluency_and_consistency(EvalContext(model=roomy, tokenizer=tok, records=records, extras={},
                                                  generation_length=8))
    assert "fluency_truncated_generations" not in figures  # reported only when some were cut


@pytest.mark.parametrize("use_cache", [True, False])
def test_sampling_stays_inside_the_context(use_cache):
    from editkit.helpers.generation import sample_continuations

    model, tok = short_gpt2(24)  # a position past 23 is an IndexError in GPT-2's position embedding
    texts = sample_continuations(model, tok, PROMPTS, max_new_tokens=40, top_k=3, use_cache=use_cache,
                                 generator=torch.Generator().manual_seed(3), batch_size=3)
    assert texts.truncated == 3  # every continuation is cut: 19 + 40, 1 + 40 and 30 + 40 exceed 24
    assert texts[2] == PROMPTS[2]  # a prompt longer than the context is not run
    assert all(t.startswith(p) for t, p in zip(texts, PROMPTS)) and texts[1] != PROMPTS[1]


def test_cut_sampling_is_the_same_with_and_without_the_cache():
    from editkit.helpers.generation import sample_continuations

    model, tok = short_gpt2(24)
    cached, uncached = (sample_continuations(model, tok, PROMPTS[:2], max_new_tokens=12, top_k=3, use_cache=c,
                                             generator=torch.Generator().manual_seed(5)) for c in (True, False))
    assert cached == uncached and cached.truncated == uncached.truncated == 1


# ---------------------------------------------------------------------- hyperparameters, devices, the null space


def resolve(constraints=("nullspace",), **config):
    from editkit.methods import RunMethods

    return RunMethods.resolve(PluginHost().catalog, RunConfig(constraints=constraints, **config))


@pytest.mark.parametrize(("key", "value"), [("v_lr", "inf"), ("v_lr", "-inf"), ("memit.clamp_norm", "Infinity"),
                                            ("nullspace.threshold", "inf"), ("nullspace.energy", "-inf"),
                                            ("v_lr", "nan")])
def test_non_finite_floats_are_refused_naming_the_key(key, value):
    field = key.rpartition(".")[2]
    with pytest.raises(UsageError, match=rf"^(memit|nullspace)\.{field}: cannot use {value!r} "
                                         r"\(expected a finite number\)$"):
        resolve(overrides={key: value})


def test_a_value_outside_a_validators_set_is_one_readable_line():
    with pytest.raises(UsageError) as info:
        resolve(overrides={"nullspace.mode": "bogus"})
    assert str(info.value) == "nullspace.mode: expected one of 'auto', 'solve', 'project', 'joint', got 'bogus'"
    with pytest.raises(UsageError, match=r"^memit\.vstar_autocast: expected one of 'none', 'bfloat16', got 'x'$"):
        resolve(overrides={"vstar_autocast": "x"})


def test_a_cpu_index_other_than_0_is_refused():
    from editkit.job.devices import check_device

    assert check_device("cpu:0") == "cpu:0"
    for text in ("cpu:1", "cpu:3"):
        with pytest.raises(UsageError, match=rf"^--device '{text}': torch has one CPU device, cpu \(also written "
                                             rf"cpu:0\); there is no {text}$"):
            check_device(text)


class Spectrum:
    def __init__(self, evals: list[float]) -> None:
        basis, _ = torch.linalg.qr(torch.randn(len(evals), len(evals), dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(0)))
        self.evals, self.evecs = torch.tensor(evals, dtype=torch.float64), basis

    def eigendecomposition(self, site):
        return self.evals, self.evecs


class NotingRun:
    def __init__(self, spectrum: Spectrum) -> None:
        self.spectrum, self.notes = spectrum, {}

    def require_key_statistics(self):
        return self.spectrum

    def note(self, site, key, value):
        self.notes.setdefault(site.layer, {})[key] = value


@pytest.mark.parametrize(("hparams", "says"), [
    ({"threshold": 1e9}, "every eigenvalue of C0 is below the threshold 1e+09 (the largest is 8)"),
    ({"threshold": 2.0, "relative": True}, "below the threshold 2 × the largest eigenvalue 8 = 16"),
])
def test_a_null_space_that_is_the_whole_space_is_warned_once_per_layer(hparams, says):
    from editkit_nullspace.constraint import NullspaceStages, NullspaceWarning
    from editkit_nullspace.hparams import NullspaceHParams

    from editkit.sites import Site
    from editkit.updates import DeltaProposal

    site = Site(layer=4, module="h.4.mlp", block="h.4", d_in=8, d_out=3, transposed=False)
    stages = NullspaceStages(NullspaceHParams(mode="project", **hparams))
    run = NotingRun(Spectrum([float(i + 1) for i in range(8)]))
    delta = torch.randn(3, 8, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            out = stages.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta))
            assert torch.allclose(out.delta, delta)  # P = I: nothing is protected
    [message] = [str(w.message) for w in record if issubclass(w.category, NullspaceWarning)]
    assert "the null space at layer 4 is the whole space" in message and says in message, message
    assert "protects none of the preserved keys" in message and "lower --set nullspace.threshold" in message
    assert run.notes[4]["nullspace.whole"]["largest_eigenvalue"] == 8.0


# ---------------------------------------------------------------------- presets, calibrated defaults, provenance

SETTINGS = {"early_stop_loss": "0.3", "v_lr": "1.0", "nullspace.l2": "3"}


class FakeFacts:
    """A dataset calibrated for the registered model ``tiny-fake``, and another dataset without settings."""

    @hookimpl
    def editkit_register_datasets(self, register):
        register(DatasetSpec(name="tiny-fake-facts", summary="s", load=list, corpus=list, model_name="tiny-fake",
                             settings=SETTINGS))
        register(DatasetSpec(name="other-facts", summary="s", load=list, model_name="another-model"))


@pytest.fixture(scope="module")
def host():
    return PluginHost(plugins=[("fakefacts", FakeFacts())])


def decided(host, dataset, **fields):
    from editkit.job.launch import _decided
    from editkit.job.runjob import RunJob

    job = RunJob(model="tiny-fake", constraints=("nullspace",), dataset=dataset, **fields)
    spec = host.catalog.get("datasets", dataset) if dataset else None
    return _decided(job, spec, host)


def test_calibrated_defaults_apply_only_when_their_dataset_is_edited(host):
    assert dict(decided(host, "tiny-fake-facts").hparam_defaults) == SETTINGS  # e.g. the demo
    assert decided(host, None, requests="requests.json").hparam_defaults == ()  # a file on the same model
    assert decided(host, "other-facts").hparam_defaults == ()  # another dataset on the same model
    assert decided(host, "tiny-fake-facts").corpus == decided(host, None, requests="r.json").corpus == "tiny-fake-facts"


def test_a_preset_is_complete(host):
    job = decided(host, "tiny-fake-facts", preset="gpt2-xl")
    assert dict(job.hparam_defaults) == {"nullspace.l2": "3"}  # the constraint's calibrated value stays
    methods = resolve(defaults=job.hparam_defaults, preset="gpt2-xl", layers=(0, 1))
    assert methods.editor_hparams.early_stop_loss == 5e-2 and methods.editor_hparams.v_lr == 0.5
    assert methods.constraint_hparams["nullspace"].l2 == 3.0


def test_where_each_value_came_from_is_printed_one_line_per_source(host, capsys):
    from editkit.job.launch import _report_hyperparameters

    job = decided(host, "tiny-fake-facts", preset="gpt2-xl", layers=(0, 1), overrides={"v_steps": "4"})
    _report_hyperparameters(job, host)
    assert capsys.readouterr().err.splitlines() == [
        "hyperparameters from dataset default (tiny-fake-facts): nullspace.l2=3.0",
        "hyperparameters from preset gpt2-xl: memit.mom2_weight=20000.0 memit.v_lr=0.5",
        "hyperparameters from --layers: memit.layers=0,1",
        "hyperparameters from --set: memit.v_steps=4",
    ]
    _report_hyperparameters(decided(host, "tiny-fake-facts"), host)
    assert capsys.readouterr().err.splitlines() == [
        "hyperparameters from dataset default (tiny-fake-facts): memit.early_stop_loss=0.3 memit.v_lr=1.0 "
        "nullspace.l2=3.0"]
    _report_hyperparameters(decided(host, "tiny-fake-facts", quiet=True), host)
    assert capsys.readouterr().err == ""


def test_a_bad_set_stops_before_the_model_is_loaded(host):
    from editkit.job.launch import _report_hyperparameters

    with pytest.raises(UsageError, match=r"^memit\.v_lr: cannot use 'inf'"):
        _report_hyperparameters(decided(host, "tiny-fake-facts", overrides={"v_lr": "inf"}, quiet=True), host)


def test_the_provenance_is_json_for_the_manifest():
    from editkit.methods import provenance

    methods = resolve(defaults={"v_lr": "1.0"}.items(), overrides={"nullspace.threshold": "1e-3"}.items())
    assert provenance(methods, "dataset default (x)") == {
        "memit.v_lr": {"source": "dataset default (x)", "value": 1.0},
        "nullspace.threshold": {"source": "--set", "value": 1e-3},
    }


def test_the_demo_keeps_its_calibrated_settings_and_the_reported_run_gets_the_preset(capsys):
    from editkit_facts import SMOLLM2_SETTINGS

    from editkit.job.launch import _dataset_name, _decided, _report_hyperparameters, _source
    from editkit.job.runjob import RunJob
    from editkit.methods import RunMethods

    host = PluginHost()
    demo = RunJob(editor="memit", constraints=("nullspace",))  # make demo: the default dataset, smollm2-facts
    demo = attrs.evolve(demo, dataset=_dataset_name(demo, host))
    demo = _decided(demo, _source(demo.dataset, host).dataset, host)
    assert (demo.dataset, demo.model, dict(demo.hparam_defaults)) == ("smollm2-facts", "smollm2-135m",
                                                                      SMOLLM2_SETTINGS)
    _report_hyperparameters(demo, host)
    assert capsys.readouterr().err.splitlines() == [
        "hyperparameters from dataset default (smollm2-facts): memit.early_stop_loss=0.3 memit.layers=4,5,6,7,8 "
        "memit.v_lr=1.0 memit.v_steps=10"]
    # the reported run: --model smollm2-135m --requests FILE --preset llama3-8b
    reported = _decided(RunJob(model="smollm2-135m", requests="requests.json", preset="llama3-8b"), None, host)
    assert reported.hparam_defaults == ()
    hparams = RunMethods.resolve(host.catalog, reported.config()).editor_hparams
    assert (hparams.early_stop_loss, hparams.v_lr, hparams.v_steps) == (5e-2, 0.1, 25)
