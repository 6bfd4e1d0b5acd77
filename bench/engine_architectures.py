"""The hf backend's engines on many architectures: equal to lm-eval's HF model, or on its path, said why.

For each architecture a random tiny model (2 layers, hidden 64, SmolLM2's 49k vocabulary and tokenizer)
answers the knowledge suite's own requests over real data twice, through lm-eval's `HFLM` and through
`PrefixCachedHFLM` (the hf backend): ARC-Challenge items (0-shot) and 5-shot MMLU items as
log-likelihoods, GSM8K 8-shot prompts as greedy generations. Printed per architecture: OK or
MISMATCH (log-likelihoods within 1e-4 with the same is_greedy, generations identical), the largest
|Δ log-likelihood| and the path each request type took (`engine_paths`). A MISMATCH is a silent wrong
number for users of that architecture; an architecture the engines cannot drive must show lm-eval's
path ("plain: why"), never a mismatch. tests/test_engine_architectures.py runs seven of these in CI on
the tiny Llama's vocabulary; this covers more, on real requests. Last run (transformers 5.23): 25
configurations of 20 architectures, all OK (~1 CPU-min).

    python bench/engine_architectures.py [--only llama,gemma2,...] [--items 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from harness.builtin import resolve_builtin
from harness.evaluate.prefix_hflm import PrefixCachedHFLM
from suites.knowledge.originals import convert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_throughput import SOURCES, _items, capture_requests  # noqa: E402

LLAMA_LIKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=2048, head_dim=32)
NO_HEAD_DIM = {k: v for k, v in LLAMA_LIKE.items() if k != "head_dim"}
# name: (model type, config options); the windows make some requests longer than the window
CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", LLAMA_LIKE),
    "llama-rope-scaled": ("llama", {**LLAMA_LIKE, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "mistral": ("mistral", {**LLAMA_LIKE, "sliding_window": 4096}),
    "mistral-window-16": ("mistral", {**LLAMA_LIKE, "sliding_window": 16}),
    "mistral-window-80": ("mistral", {**LLAMA_LIKE, "sliding_window": 80}),
    "qwen2": ("qwen2", LLAMA_LIKE),
    "qwen3": ("qwen3", LLAMA_LIKE),
    "gemma": ("gemma", LLAMA_LIKE),
    "gemma2-window-32": ("gemma2", {**LLAMA_LIKE, "sliding_window": 32, "query_pre_attn_scalar": 32}),
    "gemma2": ("gemma2", {**LLAMA_LIKE, "sliding_window": 4096, "query_pre_attn_scalar": 32}),
    "gemma3": ("gemma3_text", {**LLAMA_LIKE, "sliding_window": 4096, "query_pre_attn_scalar": 32}),
    "gemma3-window-80": ("gemma3_text", {**LLAMA_LIKE, "sliding_window": 80, "query_pre_attn_scalar": 32}),
    "phi3": ("phi3", NO_HEAD_DIM),
    "gpt2": ("gpt2", dict(n_embd=64, n_layer=2, n_head=2, n_positions=2048)),
    "gptj": ("gptj", dict(n_embd=64, n_layer=2, n_head=2, n_positions=2048, rotary_dim=16)),
    "gpt-neox": ("gpt_neox", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=2048)),
    "opt": ("opt", dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=2,
                        word_embed_proj_dim=64, max_position_embeddings=2048)),
    "falcon": ("falcon", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                              new_decoder_architecture=False)),
    "bloom": ("bloom", dict(hidden_size=64, n_layer=2, n_head=2)),
    "mixtral": ("mixtral", {**LLAMA_LIKE, "num_local_experts": 4, "num_experts_per_tok": 2}),
    "olmo2": ("olmo2", LLAMA_LIKE),
    "stablelm": ("stablelm", NO_HEAD_DIM),
    "starcoder2": ("starcoder2", NO_HEAD_DIM),
    "granite": ("granite", LLAMA_LIKE),
    "cohere": ("cohere", LLAMA_LIKE),
}


def requests(items: int) -> tuple[list[Any], list[Any]]:
    """Log-likelihood requests (ARC-c, then MMLU 5-shot) and GSM8K generation requests (24 new tokens)."""
    with tempfile.TemporaryDirectory() as tmp:
        for benchmark in ("arc_challenge", "mmlu", "gsm8k"):
            convert(benchmark, SOURCES[benchmark], Path(tmp))
        captured = capture_requests(["arc_challenge", "mmlu", "gsm8k"], Path(tmp), items, mmlu_subjects=1,
                                    allow_partial=True)
    generation = _items(captured["gsm8k"], max(1, items // 2))
    for request in generation:
        request.arguments[1]["max_gen_toks"] = 24
    return _items(captured["arc_challenge"], items) + _items(captured["mmlu"], max(1, items // 2)), generation


def check(name: str, kind: str, options: dict[str, Any], tokenizer: Any, scored: list[Any],
          generated: list[Any], directory: Path) -> str:
    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), initializer_range=0.2,
                                  tie_word_embeddings=False, **options)
    model_dir = directory / name
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    plain = HFLM(pretrained=str(model_dir), device="cpu", dtype=torch.float32, batch_size=4)
    fast = PrefixCachedHFLM(pretrained=plain.model, tokenizer=plain.tokenizer, device="cpu", batch_size=4)
    want, got = plain.loglikelihood(scored, disable_tqdm=True), fast.loglikelihood(scored, disable_tqdm=True)
    worst = max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True))
    greedy = sum(a[1] != b[1] for a, b in zip(want, got, strict=True))
    texts = plain.generate_until(generated, disable_tqdm=True)
    same = sum(a == b for a, b in zip(texts, fast.generate_until(generated, disable_tqdm=True), strict=True))
    verdict = "OK" if worst <= 1e-4 and greedy == 0 and same == len(generated) else "MISMATCH"
    return (f"{name:18s} {verdict:8s} max|dll| {worst:.1e}  is_greedy differ {greedy}  generations same "
            f"{same}/{len(generated)}  paths {json.dumps(fast.engine_paths)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated, of: {','.join(CONFIGURATIONS)}")
    parser.add_argument("--items", type=int, default=6, help="ARC-c items (half as many MMLU and GSM8K)")
    args = parser.parse_args()
    chosen = [n for n in args.only.split(",") if n] or list(CONFIGURATIONS)
    unknown = sorted(set(chosen) - set(CONFIGURATIONS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGURATIONS)}")
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_builtin("builtin:smollm2-135m-instruct")))
    scored, generated = requests(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            kind, options = CONFIGURATIONS[name]
            try:
                print(check(name, kind, options, tokenizer, scored, generated, Path(tmp)), flush=True)
            except Exception as exc:  # an architecture transformers cannot build this way: said, not fatal
                print(f"{name:18s} ERROR    {type(exc).__name__}: {str(exc)[:200]}", flush=True)


if __name__ == "__main__":
    main()
