"""The `loramoe` adapter: put LoRA-MoE layers on a frozen base model, save them, load them back.

A checkpoint of kind `loramoe` holds `loramoe_adapter.safetensors` (only the adapter tensors,
named `<module>.lora_A`, `<module>.lora_B`, `<module>.router.weight`) and `loramoe_config.json`
(n_experts, r, alpha, dropout, target modules, the adapted module names). Neither vLLM nor peft
can serve it; `load_loramoe_model` is how the hf evaluation backend builds the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from baselines.loramoe.balance import install_sample_recorder
from baselines.loramoe.layer import LoraMoELinear
from harness.errors import UserError
from harness.method import MethodOptions
from harness.train.hooks import TrainContext

WEIGHTS_FILE = "loramoe_adapter.safetensors"
CONFIG_FILE = "loramoe_config.json"
FORMAT_VERSION = 1


class LoraMoEAdapterOptions(MethodOptions):
    n_experts: int = Field(6, ge=1, description="LoRA experts per adapted linear layer.")
    r: int = Field(4, ge=1, description="Rank of each expert.")
    alpha: float = Field(32, gt=0, description="Scale alpha / r on every expert's update.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the experts' input.")


def inject(model: nn.Module, target_modules: list[str], n_experts: int, r: int, alpha: float,
           dropout: float) -> list[str]:
    """Replace every nn.Linear whose last name component is a target by a LoraMoELinear, in place.

    Returns the adapted module names, in model order (that order fixes the initialisation draws).
    """
    targets = set(target_modules)
    found = [(name, module) for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear)]
    if not found:
        raise UserError(f"training.lora.target_modules: no linear layer named {', '.join(sorted(targets))} in "
                        "the model; name the model's FFN projections (e.g. gate_proj, up_proj, down_proj)")
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoraMoELinear(module, n_experts, r, alpha, dropout))
    return [name for name, _ in found]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every adapter tensor of the model by its checkpoint name."""
    return {f"{name}.{key}": tensor for name, module in model.named_modules() if isinstance(module, LoraMoELinear)
            for key, tensor in module.adapter_tensors().items()}


class LoraMoEAdapter:
    kind: ClassVar[str] = "loramoe"
    description: ClassVar[str] = "LoRA-MoE: N LoRA experts and a softmax router per token on each target module."
    Options: ClassVar[type[MethodOptions]] = LoraMoEAdapterOptions

    def __init__(self, options: LoraMoEAdapterOptions, ctx: TrainContext | None = None) -> None:
        self.options = options

    def wrap(self, model: Any, ctx: TrainContext) -> Any:
        o = self.options
        for param in model.parameters():
            param.requires_grad_(False)
        # The experts' A and the routers are drawn from the global RNG: seeding here makes the init
        # a function of the run's init seed, as for plain LoRA.
        torch.manual_seed(ctx.init_seed)
        inject(model, list(ctx.training.lora.target_modules), o.n_experts, o.r, o.alpha, o.dropout)
        install_sample_recorder(model, getattr(ctx.tokenizer, "pad_token_id", None))
        return model

    def save(self, model: Any, out_dir: Path) -> None:
        save_adapter(model, Path(out_dir))

    def load(self, model: Any, adapter_dir: Path) -> Any:
        return load_adapter(model, Path(adapter_dir))


def save_adapter(model: nn.Module, out_dir: Path) -> None:
    from safetensors.torch import save_file

    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraMoELinear)]
    if not layers:
        raise ValueError("the model has no LoRA-MoE layers to save")
    first = layers[0][1]
    config = {"format_version": FORMAT_VERSION, "n_experts": first.n_experts, "r": first.r, "alpha": first.alpha,
              "dropout": float(getattr(first.dropout, "p", 0.0)),
              "target_modules": sorted({name.rsplit(".", 1)[-1] for name, _ in layers}),
              "modules": [name for name, _ in layers]}
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in adapter_state(model).items()}
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt", "kind": "loramoe"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_adapter(model: nn.Module, adapter_dir: Path) -> nn.Module:
    """Inject the saved layers into a fresh base model and load their weights; every tensor must match."""
    from safetensors.torch import load_file

    config_path, weights_path = adapter_dir / CONFIG_FILE, adapter_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UserError(f"{path}: missing; {adapter_dir} is not a complete LoRA-MoE checkpoint, re-create it")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{config_path}: format_version {config.get('format_version')!r} is not "
                        f"{FORMAT_VERSION}; re-create the checkpoint with this atax")
    for param in model.parameters():
        param.requires_grad_(False)
    # The loaded weights overwrite the init; forking the RNG keeps the caller's random stream as it was.
    with torch.random.fork_rng(devices=[]):
        names = inject(model, config["target_modules"], config["n_experts"], config["r"], config["alpha"],
                       config["dropout"])
    if names != config["modules"]:
        raise UserError(f"{config_path}: the adapter was made for {len(config['modules'])} modules "
                        f"({config['modules'][:2]}...) but this base model has {len(names)} ({names[:2]}...); "
                        "load it on the base model named in checkpoint.json")
    saved = load_file(str(weights_path))
    expected = adapter_state(model)
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing or unexpected:
        raise UserError(f"{weights_path}: tensors do not match the adapter (missing: {missing[:3]}, "
                        f"unexpected: {unexpected[:3]}); re-create the checkpoint")
    with torch.no_grad():
        for key, param in expected.items():
            if saved[key].shape != param.shape:
                raise UserError(f"{weights_path}: {key} has shape {tuple(saved[key].shape)}, "
                                f"expected {tuple(param.shape)}; re-create the checkpoint")
            param.copy_(saved[key])
    return model.eval()


def load_loramoe_model(checkpoint_dir: Path | str, device: Any = None, dtype: str | torch.dtype = "auto") -> Any:
    """The base model of a `loramoe` checkpoint with its LoRA-MoE layers loaded, in eval mode."""
    from harness.checkpoint import Checkpoint
    from harness.modeling import load_causal_lm, pick_device

    checkpoint = Checkpoint.load(Path(checkpoint_dir))
    if checkpoint.kind != "loramoe":
        raise UserError(f"{checkpoint.path}: a {checkpoint.kind} checkpoint, not loramoe")
    base_id = checkpoint.require_base_id()
    device = torch.device(device) if device is not None else pick_device()
    dtype_name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype
    model = load_causal_lm(base_id, checkpoint.base_model.revision, dtype_name, device)
    return load_adapter(model, checkpoint.path)
