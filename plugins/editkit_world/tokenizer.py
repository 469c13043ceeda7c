"""The world model's tokenizer: a byte-level BPE trained on the world's own text.

GPT-2 conventions: byte-level pre-tokenisation (a word's token carries its leading space),
no BOS token added, ``<|endoftext|>`` ends a text. Unlike GPT-2 a space is prefixed to the
start of every text, so a name is tokenised the same at the start of a prompt as inside it,
and the continuation " Dethball" tokenises alone exactly as after a prompt. A separate
``<pad>`` token pads batches. ``model_input_names`` is set explicitly to
``["input_ids", "attention_mask"]`` so no transformers version feeds ``token_type_ids`` to
the model (see ``small-model-calibration.md``, last note).

The vocabulary is small (default 2,048), so ordinary words are single tokens while the
generated names split into a few pieces, as rare names do in a real tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "PAD", "train_tokenizer"]

EOS = "<|endoftext|>"
PAD = "<pad>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (deterministic for the same texts)."""
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
