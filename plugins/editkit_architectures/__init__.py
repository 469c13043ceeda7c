"""First-party plugin: where the common ``transformers`` decoder families keep their edit sites.

Registered through the ``editkit`` entry-point group like any third-party plugin. Adding a
family is a data change: one :class:`editkit.ArchitectureSpec` per ``model_type``.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ArchitectureSpec, hookimpl

_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "phi3",
               "stablelm", "granite", "cohere")

SPECS: tuple[ArchitectureSpec, ...] = (
    ArchitectureSpec(model_type="gpt2", layers="transformer.h", mlp_out="transformer.h.{}.mlp.c_proj",
                     final_norm="transformer.ln_f"),
    ArchitectureSpec(model_type="gptj", layers="transformer.h", mlp_out="transformer.h.{}.mlp.fc_out",
                     final_norm="transformer.ln_f"),
    ArchitectureSpec(model_type="gpt_neo", layers="transformer.h", mlp_out="transformer.h.{}.mlp.c_proj",
                     final_norm="transformer.ln_f"),
    ArchitectureSpec(model_type="gpt_neox", layers="gpt_neox.layers", mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
                     final_norm="gpt_neox.final_layer_norm"),
    ArchitectureSpec(model_type="opt", layers="model.decoder.layers", mlp_out="model.decoder.layers.{}.fc2",
                     final_norm="model.decoder.final_layer_norm"),
    ArchitectureSpec(model_type="falcon", layers="transformer.h", mlp_out="transformer.h.{}.mlp.dense_4h_to_h",
                     final_norm="transformer.ln_f"),
    *(
        ArchitectureSpec(model_type=t, layers="model.layers", mlp_out="model.layers.{}.mlp.down_proj",
                         final_norm="model.norm")
        for t in _LLAMA_LIKE
    ),
)


@hookimpl
def editkit_register_architectures(register: Callable[[ArchitectureSpec], None]) -> None:
    for spec in SPECS:
        register(spec)
