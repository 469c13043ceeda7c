"""Tiny random models and a locally trained tokenizer, for tests (no downloads).

``tiny_tokenizer()`` trains a byte-level BPE on a small built-in text (milliseconds);
``tiny_model(family)`` builds a random-initialised causal LM of that family from a config.
"""

from __future__ import annotations

from typing import Any

TINY_TEXT = (
    "The mother tongue of Danielle Darrieux is French. Paris is the capital of France. "
    "Toko Yasuda plays the guitar. The Eiffel Tower is in Paris. Apple was founded by Steve Jobs. "
    "English German Italian Spanish Russian Japanese Chinese Dutch Swedish Polish Finnish "
    "The quick brown fox jumps over the lazy dog. Therefore because I you we they is a the of in "
    "Edwin Hubble was an astronomer. Michael Jordan plays basketball. Lionel Messi plays football. "
)


def tiny_tokenizer(*, bos: bool = False, padding_side: str = "right", vocab_size: int = 400) -> Any:
    """A fast byte-level BPE tokenizer; with ``bos`` it prepends ``<s>`` like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TINY_TEXT] * 4, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
    )
    return fast


FAMILIES = ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "opt", "gpt_neo")


def tiny_config(family: str, vocab_size: int, *, n_layers: int = 4, d_model: int = 32, d_mlp: int = 64) -> Any:
    import transformers as tf

    common: dict[str, Any] = {"vocab_size": vocab_size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if family == "gpt2":
        return tf.GPT2Config(n_layer=n_layers, n_embd=d_model, n_inner=d_mlp, n_head=4, n_positions=128, **common)
    if family == "gptj":
        return tf.GPTJConfig(n_layer=n_layers, n_embd=d_model, n_inner=d_mlp, n_head=4, rotary_dim=4, n_positions=128,
                             **common)
    if family == "gpt_neo":
        return tf.GPTNeoConfig(num_layers=n_layers, hidden_size=d_model, intermediate_size=d_mlp, num_heads=4,
                               attention_types=[[["global"], n_layers]], max_position_embeddings=128, **common)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=d_mlp,
                                num_attention_heads=4, max_position_embeddings=128, **common)
    if family == "opt":
        return tf.OPTConfig(num_hidden_layers=n_layers, hidden_size=d_model, ffn_dim=d_mlp, num_attention_heads=4,
                            word_embed_proj_dim=d_model, max_position_embeddings=128, **common)
    llama_like = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
                  "qwen3": tf.Qwen3Config}
    if family in llama_like:
        extra = {"head_dim": d_model // 4} if family == "qwen3" else {}
        return llama_like[family](num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=d_mlp,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                  **extra, **common)
    raise ValueError(f"no tiny config for family {family!r}; known: {', '.join(FAMILIES)}")


def tiny_model(family: str = "gpt2", *, vocab_size: int = 400, seed: int = 0, logit_scale: float = 1.0,
               **dims: int) -> Any:
    """A random-initialised causal LM of ``family`` (float32, eval mode).

    Random initialisation gives near-uniform next-token distributions (logits ~ ±0.2), which
    no edit can move far; ``logit_scale`` multiplies the unembedding so that distributions are
    peaked like a trained model's (20 is a good value for edit tests).
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, vocab_size, **dims))
    if logit_scale != 1.0:
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(logit_scale)
    return model.eval()


TINY_DIMS: dict[str, int] = {"n_layers": 4, "d_model": 64, "d_mlp": 128}
"""Model size the pytest fixtures use: two edited layers (1, 2) and measurable edits in well under a second."""

EDIT_FAMILIES = ("gpt2", "gptj", "llama", "qwen2")
"""Families on which a MEMIT edit of :func:`tiny_requests` reliably raises every target (tested)."""

_SUBJECTS = ("Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan", "Lionel Messi", "Steve Jobs",
             "Paris", "France", "Apple", "Eiffel Tower")
_TARGETS = ("English", "German", "Italian", "Spanish", "Russian", "Japanese", "Chinese", "Dutch", "Swedish", "Polish")
_PROMPTS = ("The mother tongue of {}", "Speaks: {}", "Born in a country that speaks, {}")


def tiny_texts() -> list[str]:
    """The sentences of :data:`TINY_TEXT`: background text for key statistics (C0) in tests."""
    return [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]


def tiny_requests(n: int = 4, *, offset: int = 0) -> list[Any]:
    """``n`` valid :class:`~editkit.requests.EditRequest` (case ids ``offset..offset+n-1``).

    The prompts *end* with the subject: in a random model only the subject's last position can
    carry an edit to the next token, so these are the requests whose edits are measurable.
    """
    from editkit.requests import EditRequest

    return [
        EditRequest(case_id=offset + i, subject=_SUBJECTS[i % len(_SUBJECTS)],
                    prompt=_PROMPTS[(i // len(_SUBJECTS)) % len(_PROMPTS)],
                    target_new=_TARGETS[(i * 3 + 1) % len(_TARGETS)], target_true=_TARGETS[(i * 3 + 2) % len(_TARGETS)])
        for i in range(n)
    ]
