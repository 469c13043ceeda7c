"""The journal's files without a model: what a new run may replace, what --resume accepts, how many
batches a run has, and journals written before the hashes were renamed."""

from __future__ import annotations

import pytest
import torch

from editkit.errors import InputError, UsageError
from editkit.job.journal import AFTER_HASH, BASE_HASH, Journal, JournalError, recorded_hash


def add_batch(journal: Journal, index: int) -> None:
    journal.append(index, [{"case_id": index}], {"m.weight": torch.zeros(2, 2, dtype=torch.float64)},
                   {"rng": torch.zeros(4, dtype=torch.uint8)})


@pytest.fixture
def journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "run")
    j.write_manifest({"requests": [{"case_id": i} for i in range(5)], "config": {"batch_size": 2}, "batches": 3})
    return j


def test_a_journal_without_a_complete_batch_is_replaced_by_a_new_run(journal, tmp_path):
    (journal.batch_dir(0)).mkdir()  # killed mid-batch: no entry.json
    journal.check_new_run(tmp_path / "run")
    journal.claim_for_new_run(tmp_path / "run")
    assert not journal.root.exists()


def test_a_journal_with_a_complete_batch_is_kept(journal, tmp_path):
    add_batch(journal, 0)
    with pytest.raises(UsageError, match="already holds a run journal"):
        journal.claim_for_new_run(tmp_path / "run")
    assert journal.entries()[0].index == 0


def test_resume_needs_a_complete_batch(journal, tmp_path):
    with pytest.raises(UsageError, match="nothing to resume"):
        journal.check_resumable(tmp_path / "run")
    add_batch(journal, 0)
    assert journal.check_resumable(tmp_path / "run")["batches"] == 3


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="not a run directory"):
        Journal(tmp_path / "file").manifest()


def test_planned_batches_recorded_or_derived_for_older_journals(journal):
    assert journal.planned_batches() == 3
    older = {"requests": [{}] * 5, "config": {"batch_size": 2}}
    assert journal.planned_batches(older) == 3
    assert journal.planned_batches({}) is None


def test_resume_discards_only_trailing_incomplete_batches(journal):
    for i in range(3):
        add_batch(journal, i)
    (journal.batch_dir(1) / "entry.json").unlink()  # damaged in the middle: reported, not deleted
    journal.batch_dir(3).mkdir()  # killed mid-batch: discarded
    assert journal.discard_incomplete() == [journal.batch_dir(3)]
    assert (journal.batch_dir(1) / "delta.safetensors").exists()
    with pytest.raises(InputError, match="gap"):
        journal.entries()


def test_hashes_are_read_under_their_former_names_too():
    assert recorded_hash({BASE_HASH: "a"}, BASE_HASH) == "a"
    assert recorded_hash({"base_weights_sha256": "b"}, BASE_HASH) == "b"
    assert recorded_hash({"weights_sha256_after": "c"}, AFTER_HASH) == "c"
    assert recorded_hash({}, AFTER_HASH) is None

