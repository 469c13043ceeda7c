"""Model layout: where a loaded ``transformers`` causal LM keeps what editing needs.

Resolution uses the :class:`~editkit.catalog.ArchitectureSpec` registered for the config's
``model_type``; otherwise a structural search finds the decoder blocks (the ``ModuleList``
with ``num_hidden_layers`` entries), in each the MLP down-projection (the last linear map
of the MLP whose output width is ``d_model``), the final norm and the unembedding. When
it cannot, :class:`LayoutError` names what was missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import TYPE_CHECKING, Any, cast

import attrs

from editkit.catalog import ArchitectureSpec
from editkit.errors import EditkitError
from editkit.sites import Site

if TYPE_CHECKING:  # pragma: no cover
    import torch


class LayoutError(EditkitError):
    """The model's edit sites could not be resolved."""

    exit_code = 2


def _weight_dims(module: torch.nn.Module) -> tuple[int, int, bool] | None:
    """``(d_out, d_in, transposed)`` of a linear map in math layout, or None."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.out_features, module.in_features, False
    if type(module).__name__ == "Conv1D" and hasattr(module, "weight"):  # GPT-2 family, stores Wᵀ
        d_in, d_out = cast("torch.Tensor", module.weight).shape
        return int(d_out), int(d_in), True
    return None


@attrs.frozen(kw_only=True)
class ModelLayout:
    """Resolved module names of one model (no tensors held)."""

    model_type: str
    source: str  # "catalog" or "structural"
    n_layers: int
    d_model: int
    d_mlp: int
    blocks: tuple[str, ...]
    mlp_out: tuple[str, ...]
    transposed: bool
    final_norm: str | None
    unembed: str | None

    def site(self, layer: int) -> Site:
        if not 0 <= layer < self.n_layers:
            raise LayoutError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        return Site(
            layer=layer,
            module=self.mlp_out[layer],
            block=self.blocks[layer],
            d_in=self.d_mlp,
            d_out=self.d_model,
            transposed=self.transposed,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "source": self.source,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "blocks": f"{self.blocks[0]} .. {self.blocks[-1]}",
            "mlp_out": f"{self.mlp_out[0]} .. {self.mlp_out[-1]}",
            "mlp_out_transposed": self.transposed,
            "final_norm": self.final_norm,
            "unembed": self.unembed,
        }


def _submodule(model: torch.nn.Module, name: str, what: str) -> torch.nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise LayoutError(f"{type(model).__name__}: {what} {name!r} not found") from None


def _from_spec(model: torch.nn.Module, spec: ArchitectureSpec) -> ModelLayout:
    blocks_list = _submodule(model, spec.layers, "decoder block list")
    n_layers = len(cast(Sized, blocks_list))
    blocks = tuple(f"{spec.layers}.{i}" for i in range(n_layers))
    mlp_out = tuple(spec.mlp_out.format(i) for i in range(n_layers))
    dims = _weight_dims(_submodule(model, mlp_out[0], "MLP output projection"))
    if dims is None:
        raise LayoutError(f"{mlp_out[0]} is not a linear map (got {type(model.get_submodule(mlp_out[0])).__name__})")
    d_model, d_mlp, transposed = dims
    final_norm = spec.final_norm if _exists(model, spec.final_norm) else None
    unembed = spec.unembed if _exists(model, spec.unembed) else _output_embeddings_name(model)
    return ModelLayout(
        model_type=spec.model_type, source="catalog", n_layers=n_layers, d_model=d_model, d_mlp=d_mlp,
        blocks=blocks, mlp_out=mlp_out, transposed=transposed, final_norm=final_norm, unembed=unembed,
    )


def _output_embeddings_name(model: torch.nn.Module) -> str | None:
    getter = getattr(model, "get_output_embeddings", None)
    module = getter() if getter is not None else None
    if module is None:
        return None
    return next((n for n, m in model.named_modules() if m is module), None)


def _exists(model: torch.nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def _structural(model: torch.nn.Module) -> ModelLayout:
    import torch

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    d_model = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not n_layers or not d_model:
        raise LayoutError(
            f"{model_type}: cannot resolve edit sites: the config has no num_hidden_layers/hidden_size "
            "and no architecture plugin covers this model_type"
        )
    layers_name = next(
        (n for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers),
        None,
    )
    if layers_name is None:
        raise LayoutError(f"{model_type}: no ModuleList of {n_layers} decoder blocks found")
    mlp_out: list[str] = []
    transposed = False
    d_mlp: int | None = None
    for i in range(n_layers):
        block_name = f"{layers_name}.{i}"
        block = model.get_submodule(block_name)
        candidates = []
        for name, module in block.named_modules():
            parts = name.split(".")
            if not any(p in {"mlp", "feed_forward", "ffn", "fc2", "dense_4h_to_h"} for p in parts):
                continue
            dims = _weight_dims(module)
            if dims and dims[0] == d_model and dims[1] > d_model:
                candidates.append((name, dims))
        if not candidates:
            raise LayoutError(
                f"{model_type}: block {block_name} has no MLP down-projection (a linear map from a wider "
                f"space to d_model={d_model} inside an 'mlp'/'feed_forward' module); register an "
                "ArchitectureSpec for this model_type"
            )
        name, (_, d_in, transposed) = candidates[-1]
        d_mlp = d_in
        mlp_out.append(f"{block_name}.{name}")
    final_norm = next(
        (n for n, m in model.named_modules() if not n.startswith(layers_name) and "norm" in type(m).__name__.lower()
         and n.count(".") <= 1 and n),
        None,
    )
    unembed = _output_embeddings_name(model)
    return ModelLayout(
        model_type=str(model_type), source="structural", n_layers=int(n_layers), d_model=int(d_model),
        d_mlp=int(cast(int, d_mlp)),  # set by the loop over the (at least one) blocks
        blocks=tuple(f"{layers_name}.{i}" for i in range(n_layers)), mlp_out=tuple(mlp_out), transposed=transposed,
        final_norm=final_norm, unembed=unembed,
    )


def resolve_layout(model: torch.nn.Module, architectures: Mapping[str, ArchitectureSpec] | None = None) -> ModelLayout:
    """Resolve ``model``'s layout from a registered spec, else structurally."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    spec = (architectures or {}).get(model_type) if model_type else None
    if spec is not None:
        return _from_spec(model, spec)
    return _structural(model)
