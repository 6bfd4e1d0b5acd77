"""Training jobs and logits on the tiny model, shared by the engine, hook, merge and eval tests.

The trained adapters themselves are a session fixture in conftest.py (`adapters`).
"""

from __future__ import annotations

import torch
from transformers import MistralConfig, MistralForCausalLM

from harness.builtin.toy_instructions import generate_toy_instructions
from harness.checkpoint import Checkpoint
from harness.config import BaseModelConfig, TrainingConfig
from harness.data import InstructionRecord
from harness.merge.adapters import read_adapter
from harness.method import RunSpec
from harness.modeling import load_causal_lm
from harness.train.engine import TrainJob

TINY = "builtin:tiny-llama"
BASE = BaseModelConfig(id=TINY)
CPU = torch.device("cpu")
FAST = dict(batch_size=8, micro_batch_size=4, max_seq_len=256, epochs=1, max_steps=12,
            scheduler={"warmup_steps": 2}, optimizer={"lr": 3e-3})


def records(n: int = 200, seed: int = 0) -> list[InstructionRecord]:
    return [InstructionRecord(**r) for r in generate_toy_instructions(n, seed)]


def job(tmp_path, name="run", seed=0, init_seed=None, n=200, **training) -> TrainJob:
    cfg = TrainingConfig.model_validate({**FAST, **training})
    spec = RunSpec(name=name, seed=seed, init_seed=init_seed)
    return TrainJob(BASE, cfg, spec, records(n), tmp_path / name, run_key=f"key-{name}-{seed}-{init_seed}")


def deltas(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    return {name: module.delta() for name, module in read_adapter(checkpoint.path).modules.items()}


def logits(model) -> torch.Tensor:
    ids = torch.tensor([[1, 50, 60, 70, 80, 90, 100, 3]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def peft_logits(adapter_dir) -> torch.Tensor:
    from peft import PeftModel

    return logits(PeftModel.from_pretrained(load_causal_lm(TINY, None, "float32", CPU), str(adapter_dir)).eval())


def windowed_twin(llama: torch.nn.Module, window: int) -> torch.nn.Module:
    """The tiny Llama's weights as a Mistral whose attention sees only the last `window` tokens (Mistral
    is Llama plus that window: without it, the two compute the same)."""
    shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters",
             "bos_token_id", "eos_token_id", "pad_token_id")
    config = MistralConfig(**{name: getattr(llama.config, name) for name in shape}, sliding_window=window)
    twin = MistralForCausalLM(config).eval()
    twin.load_state_dict(llama.state_dict())
    return twin
