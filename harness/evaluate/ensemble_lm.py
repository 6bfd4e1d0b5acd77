"""An lm-eval model for `ensemble` checkpoints: the members' next-token probabilities averaged.

Built on lm-eval's HFLM so requests, batching and post-processing stay lm-eval's; only the two
model calls change. Log-likelihood: `_model_call` returns log Σ wᵢ softmax(logitsᵢ) (already
normalised, so lm-eval's log_softmax leaves it unchanged). Generation: a token-by-token loop
over the averaged distribution (greedy, or sampling at the requested temperature), with one
KV cache per member. Each token costs K forward passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM


def load_members(base_model: Any, checkpoint_dir: Path) -> tuple[Any, list[str], list[float]]:
    """The base wrapped by peft with every member loaded as a named adapter."""
    from peft import PeftModel

    from harness.checkpoint import Checkpoint
    from harness.merge.ensemble import member_dirs

    merge = Checkpoint.load(Path(checkpoint_dir)).merge
    assert merge is not None and merge.weights is not None, f"{checkpoint_dir}: an ensemble without weights"
    dirs = member_dirs(checkpoint_dir)
    names = [f"member{i}" for i in range(len(dirs))]
    model = PeftModel.from_pretrained(base_model, str(dirs[0]), adapter_name=names[0])
    for name, directory in zip(names[1:], dirs[1:], strict=True):
        model.load_adapter(str(directory), adapter_name=name)
    return model.eval(), names, list(merge.weights)


class EnsembleLM(HFLM):
    def __init__(self, members: list[str], weights: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.members, self.weights = members, weights

    def _mixed_logprobs(self, member_logits: list[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
        probs = sum(w * torch.softmax(logits.float() / temperature, dim=-1)
                    for w, logits in zip(self.weights, member_logits, strict=True))
        return torch.log(probs.clamp_min(1e-30))

    def _model_call(self, inps: torch.Tensor, attn_mask: Any = None, labels: Any = None) -> torch.Tensor:
        logits = []
        with torch.no_grad():
            for name in self.members:
                self.model.set_adapter(name)
                logits.append(self.model(inps).logits)
        return self._mixed_logprobs(logits)

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **kwargs: Any) -> torch.Tensor:
        temperature = float(kwargs.get("temperature", 0.0) or 0.0)
        do_sample = bool(kwargs.get("do_sample", False)) and temperature > 0
        generator = torch.Generator(device=context.device).manual_seed(int(kwargs.get("seed", 0) or 0))
        sequences = context
        caches: list[Any] = [None] * len(self.members)
        step_input = context
        with torch.no_grad():
            while sequences.shape[1] < max_length:
                logits = []
                for i, name in enumerate(self.members):
                    self.model.set_adapter(name)
                    out = self.model(step_input, past_key_values=caches[i], use_cache=True)
                    caches[i] = out.past_key_values
                    logits.append(out.logits[:, -1, :])
                logprobs = self._mixed_logprobs(logits, temperature if do_sample else 1.0)
                if do_sample:
                    token = torch.multinomial(logprobs.exp(), 1, generator=generator)
                else:
                    token = logprobs.argmax(dim=-1, keepdim=True)
                sequences = torch.cat([sequences, token], dim=1)
                step_input = token
                if self._finished(sequences[:, context.shape[1]:], stop):
                    break
        return sequences

    def _finished(self, generated: torch.Tensor, stop: list[str]) -> bool:
        """Every row has produced EOS or one of the stop strings."""
        eos = self.tokenizer.eos_token_id
        for row in generated:
            text = self.tokenizer.decode(row, skip_special_tokens=False)
            if not ((eos is not None and eos in row.tolist()) or any(s in text for s in stop or [])):
                return False
        return True
