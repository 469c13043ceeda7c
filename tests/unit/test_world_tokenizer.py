"""The world tokenizer: GPT-2 conventions, no token_type_ids, prompts and targets split at spaces."""

from __future__ import annotations

import pytest
from editkit_world import World, WorldConfig
from editkit_world.tokenizer import EOS, PAD, train_tokenizer


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(seed=0, n_subjects=200, train_filler=200, background_filler=800))


@pytest.fixture(scope="module")
def tokenizer(world: World):
    return train_tokenizer(world.background_corpus(), vocab_size=1024)


def test_special_tokens_and_inputs(tokenizer) -> None:
    assert tokenizer.eos_token == EOS and tokenizer.pad_token == PAD
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert list(tokenizer.model_input_names) == ["input_ids", "attention_mask"]
    enc = tokenizer("Some text")
    assert set(enc) == {"input_ids", "attention_mask"}  # never token_type_ids
    assert EOS not in tokenizer.convert_ids_to_tokens(enc["input_ids"])  # no BOS added, as GPT-2


def test_prompt_and_target_tokenise_apart(world: World, tokenizer) -> None:
    for probe in world.fact_probes()[::37]:
        joined = tokenizer(probe.prompt + probe.target)["input_ids"]
        apart = tokenizer(probe.prompt)["input_ids"] + tokenizer(probe.target)["input_ids"]
        assert joined == apart
        assert tokenizer.decode(joined) == " " + probe.prompt + probe.target  # prefix space only


def test_subject_tokens_do_not_depend_on_position(world: World, tokenizer) -> None:
    subject = world.subjects[0]
    alone = tokenizer(subject)["input_ids"]
    inside = tokenizer(f"The birthplace of {subject} is")["input_ids"]
    assert any(inside[i : i + len(alone)] == alone for i in range(len(inside)))


def test_deterministic(world: World, tokenizer) -> None:
    again = train_tokenizer(world.background_corpus(), vocab_size=1024)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_whole_words_become_single_tokens(world: World, tokenizer) -> None:
    family = [s.split()[-1] for s in world.subjects]
    whole = train_tokenizer(world.background_corpus(), vocab_size=1024, whole_words=family)
    assert sum(len(tokenizer(f)["input_ids"]) > 1 for f in family) > len(family) // 2
    for subject in world.subjects:  # the subject's last token is its own
        last = whole(subject)["input_ids"][-1]
        assert whole.convert_ids_to_tokens(last) == "Ġ" + subject.split()[-1]
    assert len({whole(s)["input_ids"][-1] for s in world.subjects}) == len(world.subjects)
    for text in world.background_corpus()[:300]:  # the same text (other words may be chunked differently)
        assert whole.decode(whole(text)["input_ids"]) == tokenizer.decode(tokenizer(text)["input_ids"])
    for probe in world.fact_probes()[::37]:  # prompts and targets still tokenise apart
        joined = whole(probe.prompt + probe.target)["input_ids"]
        assert joined == whole(probe.prompt)["input_ids"] + whole(probe.target)["input_ids"]
    again = train_tokenizer(world.background_corpus(), vocab_size=1024, whole_words=family)
    assert again.get_vocab() == whole.get_vocab()
