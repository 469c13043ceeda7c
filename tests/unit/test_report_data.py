"""`editkit report`'s data extraction from run directories: several runs, missing sections, resumed runs,
and bad input named in the error."""

from __future__ import annotations

import json

import pytest

from editkit.errors import InputError
from editkit.report.data import extract, load_run, load_runs, replayed_batches
from editkit.testing.results import synthetic_result, write_run


@pytest.fixture
def two_runs(tmp_path):
    alpha = write_run(tmp_path / "alphaedit", synthetic_result(constraints=("nullspace",), layers=(4, 5), batches=3,
                                                                broken=[(1, 5)]))
    memit = write_run(tmp_path / "memit", synthetic_result(layers=(4, 5), batches=3, eval_every=0))
    return extract(load_runs([alpha, memit]))


def test_runs_side_by_side(two_runs):
    alpha, memit = two_runs["runs"]
    assert (alpha["label"], memit["label"]) == ("alphaedit", "memit")
    assert alpha["constraints"] == ["nullspace"] and memit["constraints"] == []
    assert alpha["layers"] == [4, 5] and alpha["edits"] == 6 and alpha["batches"] == 3 and alpha["batch_size"] == 2
    assert alpha["hparams"]["nullspace.threshold"] == 0.02 and "nullspace.threshold" not in memit["hparams"]
    assert alpha["versions"]["torch"] == "2.13.0"
    assert alpha["eval_seconds"] == {"pre": 1.5, "post": 1.6}
    assert alpha["batch_seconds"] == pytest.approx(0.7 + 1.4 + 2.1)
    assert not alpha["resumed"] and alpha["replayed_batches"] == []


def test_metrics_table_has_differences_and_edit_success(two_runs):
    table = two_runs["metrics"]
    assert table["metrics"][:5] == ["edit success", "efficacy", "generalisation", "specificity", "retention"]
    row = table["runs"]["alphaedit"]["specificity"]
    assert row == {"pre": 90.0, "post": 85.0, "difference": -5.0}
    assert table["runs"]["memit"]["edit success"] == {"pre": 0.0, "post": 75.0, "difference": 75.0}


def test_curves_per_metric_per_run_and_missing_curve_stated(two_runs):
    curves = two_runs["curves"]
    assert curves["metrics"] == ["efficacy", "specificity", "retention"]  # ordered; counts are not curves
    assert curves["runs"]["alphaedit"]["efficacy"] == {"edits": [2, 4, 6], "batches": [1, 2, 3],
                                                       "values": [95.0, 90.0, 85.0]}
    assert "memit" not in curves["runs"]
    assert "--eval-every" in curves["missing"]["memit"]


def test_nullspace_sections_present_for_one_run_and_stated_missing_for_the_other(two_runs):
    spectra = two_runs["spectra"]
    assert set(spectra["runs"]["alphaedit"]) == {"4", "5"}
    layer = spectra["runs"]["alphaedit"]["4"]
    assert layer["null_space"] == 16 and layer["threshold"] == 0.02 and layer["d_in"] == 64
    assert len(layer["index"]) == len(layer["eigenvalues"]) > 0
    assert "null-space constraint" in spectra["missing"]["memit"]
    kept = two_runs["kept_key_energy"]
    assert kept["runs"]["alphaedit"]["5"] == {"batch": [1, 2, 3], "kept": [0.3, 0.28, 0.26],
                                              "null_space": [16, 16, 16]}
    assert "memit" in kept["missing"]


def test_update_norms_and_vstar_per_batch(two_runs):
    norms = two_runs["update_norms"]["runs"]
    assert norms["memit"]["4"]["batch"] == [1, 2, 3]
    assert norms["memit"]["4"]["norm"] == [1.0, 1.5, 2.0] and norms["memit"]["5"]["relative"] == [0.01, 0.02, 0.03]
    vstar = two_runs["vstar"]["runs"]["alphaedit"]
    assert vstar == {"batch": [1, 2, 3], "median_final_loss": [0.5, 0.6, 0.7], "share_below_0.7": [0.9, 0.8, 0.7]}


def test_invariants_pass_fail_per_batch_and_final(two_runs):
    section = two_runs["invariants"]
    checks = section["runs"]["alphaedit"]["checks"]
    assert len(checks) == 3 * 2 + 2  # every batch and layer, and the final stage
    broken = [c for c in checks if not c["holds"]]
    assert [(c["batch"], c["layer"], c["constraint"]) for c in broken] == [(2, 5, "nullspace")]
    summary = {row["layer"]: row for row in section["runs"]["alphaedit"]["summary"]}
    assert summary[4]["failed"] == 0 and summary[4]["checks"] == 4 and summary[4]["final"] is True
    assert summary[5]["failed"] == 1 and summary[5]["worst"] == 0.2
    assert "no constraint" in section["missing"]["memit"]


def test_timings_stacked_by_stage_and_peak_memory(two_runs):
    timings = two_runs["timings"]["runs"]["memit"]
    assert timings["stages"][0] == "collect_keys" and timings["batch"] == [1, 2, 3]
    assert timings["seconds"]["solve"] == [0.1, 0.2, 0.3]
    memory = two_runs["peak_memory"]["runs"]["memit"]
    assert memory["peak_mib"] == [406.0, 416.0, 426.0] and memory["peak_mib_overall"] == 426.0
    assert memory["measures"].startswith("peak RSS")


def test_the_extracted_data_is_json(two_runs):
    assert json.loads(json.dumps(two_runs)) == two_runs


def test_a_run_without_metrics_or_optional_sections_is_reported_with_reasons(tmp_path):
    result = synthetic_result(metrics=False)
    result.pop("final")
    for batch in result["batches"]:
        batch["peak_memory_mib"] = {}
        batch.pop("timings")
        for notes in batch["layers"].values():
            for key in [k for k in notes if k.startswith(("update.", "vstar."))]:
                del notes[key]
    data = extract([load_run(write_run(tmp_path / "bare", result))])
    assert "--metrics none" in data["metrics"]["missing"]["bare"]
    assert data["metrics"]["runs"]["bare"]["edit success"]["post"] == 75.0
    assert "--metrics none" in data["curves"]["missing"]["bare"]
    for name in ("spectra", "kept_key_energy", "update_norms", "vstar", "invariants", "timings", "peak_memory"):
        assert data[name]["runs"] == {}, name
        assert data[name]["missing"]["bare"], name


def test_a_minimal_result_with_only_the_required_sections(tmp_path):
    run = write_run(tmp_path / "minimal", {"summary": {}, "run": {}, "batches": []})
    data = extract([load_run(run)])
    assert data["runs"][0]["edits"] is None and data["runs"][0]["batches"] == 0
    assert data["metrics"]["metrics"] == []


def test_a_resumed_run_names_its_replayed_batches(tmp_path):
    data = extract([load_run(write_run(tmp_path / "resumed", synthetic_result(batches=4, replayed=2)))])
    run = data["runs"][0]
    assert run["resumed"] and run["replayed_batches"] == [1, 2]
    assert data["timings"]["runs"]["resumed"]["batch"] == [1, 2, 3, 4]  # replayed batches keep their figures


def test_a_resumed_run_written_before_the_replayed_mark_is_recognised_by_its_missing_memory():
    batches = synthetic_result(batches=4)["batches"]
    for batch in batches[:3]:
        batch["peak_memory_mib"] = {}  # what replay left before it kept them
    assert replayed_batches(batches) == [1, 2, 3]
    assert replayed_batches(synthetic_result(batches=2)["batches"]) == []
    for batch in batches:
        batch["peak_memory_mib"] = {}
    assert replayed_batches(batches) == []  # nothing recorded at all: no evidence of a resume


def test_duplicate_directory_names_get_distinct_labels(tmp_path):
    a = write_run(tmp_path / "a" / "run", synthetic_result())
    b = write_run(tmp_path / "b" / "run", synthetic_result())
    assert [r.label for r in load_runs([a, b])] == ["a/run", "b/run"]
    assert [r.label for r in load_runs([a, a])] == ["1: a/run", "2: a/run"]


def test_an_invalid_spectrum_note_is_left_out(tmp_path):
    result = synthetic_result(constraints=("nullspace",), layers=(3,))
    result["batches"][0]["layers"]["3"]["nullspace.spectrum"]["eigenvalues"] = ["x"]
    data = extract([load_run(write_run(tmp_path / "odd", result))])
    assert data["spectra"]["runs"] == {} and "odd" in data["spectra"]["missing"]


def test_not_a_directory(tmp_path):
    with pytest.raises(InputError, match="nowhere: no such run directory"):
        load_run(tmp_path / "nowhere")


def test_a_directory_without_result_json_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: not an editkit run directory \(no result.json\)$"):
        load_run(tmp_path / "empty")
    (tmp_path / "empty" / "journal").mkdir()
    (tmp_path / "empty" / "journal" / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match="editkit run --resume"):
        load_run(tmp_path / "empty")


def test_a_truncated_result_json_is_named(tmp_path):
    run = write_run(tmp_path / "cut", synthetic_result())
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match=r"cut/result.json: not valid JSON, truncated or damaged\?"):
        load_run(run)


@pytest.mark.parametrize(("content", "expected"), [
    ("[]", "expected a JSON object, got list"),
    ('{"summary": {}}', r"not an editkit result \(missing run, batches\)"),
    ('{"summary": {}, "run": {}, "batches": [1]}', "'batches' must be a list of objects"),
    (b"\xff\xfe{", "not UTF-8 text"),
])
def test_other_bad_result_files(tmp_path, content, expected):
    (tmp_path / "bad").mkdir()
    path = tmp_path / "bad" / "result.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=expected):
        load_run(tmp_path / "bad")


def test_a_file_given_as_a_run_directory(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(InputError, match=r"result.json: not a directory \(give a run's --out directory"):
        load_run(tmp_path / "result.json")


def test_generation_figures_sit_beside_their_teacher_forced_ones_and_counts_are_not_curves(tmp_path):
    result = synthetic_result(batches=2)
    result["metrics"]["pre"].update({"generation_efficacy": 1.0, "generation_specificity": 40.0,
                                     "generation_prompts": 30.0, "generation_skipped_prompts": 2.0})
    result["metrics"]["post"].update({"generation_efficacy": 60.0, "generation_specificity": 35.0,
                                      "generation_prompts": 30.0, "generation_skipped_prompts": 2.0})
    for point in result["curve"]:
        point.update({"generation_efficacy": 50.0, "generation_prompts": 30.0, "portability_questions": 4.0})
    data = extract(load_runs([write_run(tmp_path / "run", result)]))
    names = data["metrics"]["metrics"]
    assert names.index("generation_efficacy") == names.index("efficacy") + 1
    assert names.index("generation_specificity") == names.index("specificity") + 1
    assert data["curves"]["metrics"][:2] == ["efficacy", "generation_efficacy"]
    assert not {"generation_prompts", "portability_questions"} & set(data["curves"]["metrics"])
