"""A tiny Llama model written as a ``.gguf`` file the way llama.cpp's converter writes one (for tests).

:func:`write_tiny_gguf` saves :func:`editkit.testing.tiny.tiny_model` ("llama" family) with the
byte-level BPE of :func:`~editkit.testing.tiny.tiny_tokenizer` through the ``gguf`` package's
writer: llama.cpp tensor names, Q/K rows permuted as llama.cpp stores them, float32 tensors,
the tokenizer as ``gpt2``-type metadata. Reading it back with ``transformers`` must give the
original weights exactly, which is what the conversion tests check. Milliseconds, no download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editkit.testing.tiny import tiny_model, tiny_tokenizer

TINY_GGUF_DIMS: dict[str, int] = {"n_layers": 2, "d_model": 32, "d_mlp": 64}
"""4 heads of 8, 2 key/value heads (tiny_config's llama settings)."""


def _llama_permute(weight: Any, n_head: int) -> Any:
    """llama.cpp's row order for the rotary Q/K projections (transformers undoes it when reading)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path: str | Path, *, seed: int = 0, tied: bool = True, name: str = "tiny llama") -> tuple[Any, Any]:
    """Write a tiny Llama model and its tokenizer to ``path`` (a ``.gguf`` file); returns ``(model, tokenizer)``.

    With ``tied`` the file has no ``output.weight`` (the unembedding is the embedding), as in SmolLM2.
    """
    import gguf
    import torch

    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tokenizer), seed=seed, **TINY_GGUF_DIMS)
    config = model.config
    if tied:
        config.tie_word_embeddings = True
        model.tie_weights()
    elif model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr():
        with torch.no_grad():  # untie: an unembedding of its own
            model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone() * 2)
        config.tie_word_embeddings = False
    model.eval()

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in definition["model"]["merges"]]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)

    state = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    if not tied:
        writer.add_tensor("output.weight", state["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for layer in range(config.num_hidden_layers):
        for hf, ggml in names.items():
            weight = state[f"model.layers.{layer}.{hf}.weight"]
            if ggml == "attn_q":
                weight = _llama_permute(weight, config.num_attention_heads)
            elif ggml == "attn_k":
                weight = _llama_permute(weight, config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{ggml}.weight", weight.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, tokenizer
