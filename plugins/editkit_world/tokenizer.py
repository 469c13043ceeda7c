"""The world model's tokenizer: a byte-level BPE trained on the world's own text.

GPT-2 conventions: byte-level pre-tokenisation (a word's token carries its leading space),
no BOS token added, ``<|endoftext|>`` ends a text. Unlike GPT-2 a space is prefixed to the
start of every text, so a name is tokenised the same at the start of a prompt as inside it,
and the continuation " Dethball" tokenises alone exactly as after a prompt. A separate
``<pad>`` token pads batches. ``model_input_names`` is set explicitly to
``["input_ids", "attention_mask"]`` so no transformers version feeds ``token_type_ids`` to
the model (see ``small-model-calibration.md``, last note).

The vocabulary is small, so ordinary words are single tokens while generated names split into a
few pieces, as rare names do in a real tokenizer — except the ``whole_words`` (the subjects'
family names): each becomes one token of its own, appended to the learned merges as the chain
of merges that joins its pieces. A subject's last token then identifies the subject, as the
last subject token's representation does in the middle layers of a large model: with shared
last pieces ("...il"), the keys of different subjects at the edited layers overlap (centred
cosine 0.56 at layer 1 between subjects sharing the piece) and every edit spills onto them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "PAD", "train_tokenizer"]

EOS = "<|endoftext|>"
PAD = "<pad>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048,
                    whole_words: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts); each of
    ``whole_words`` (after a space) becomes a single token, beyond ``vocab_size``."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    if whole_words:
        core = _with_whole_words(core, whole_words)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_input_names=["input_ids", "attention_mask"],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def _with_whole_words(core: Tokenizer, words: Sequence[str]) -> Tokenizer:
    """``core`` with merges appended (lowest priority, in order) so that ``" " + word`` is one token.

    BPE applies the lowest-ranked merge among adjacent pairs first; merges appended after all
    learned ones act only on what the learned merges leave. Each round appends, for every word
    still in several pieces, the merge of its first two pieces; rounds repeat until every word
    is one token (each round shortens every unfinished word by at least one piece).
    """
    for _ in range(64):
        data = json.loads(core.to_str())
        vocab, merges = data["model"]["vocab"], data["model"]["merges"]
        known = {tuple(m) for m in merges}
        added = False
        for word in dict.fromkeys(words):
            pieces = core.encode(word).tokens  # add_prefix_space: the word as after a space
            if len(pieces) > 1:
                pair = (pieces[0], pieces[1])
                if pair not in known:
                    known.add(pair)
                    merges.append(list(pair))
                    vocab.setdefault(pair[0] + pair[1], len(vocab))
                    added = True
        if not added:
            break
        core = Tokenizer.from_str(json.dumps(data))
    unfinished = [w for w in words if len(core.encode(w).tokens) > 1]
    if unfinished:
        raise RuntimeError(f"could not make {len(unfinished)} word(s) single tokens, e.g. {unfinished[:3]}")
    return core
