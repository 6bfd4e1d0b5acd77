"""Evaluation throughput of the hf backend against lm-eval's own HF model, same requests, one run.

The requests are the knowledge suite's own (its lm-eval tasks over real data converted from
../shared/data, captured once), so both sides score exactly what `atax eval` would send:

    log-likelihood  TruthfulQA-MC1 (6-shot QA preamble, ~8 choices), ARC-Challenge (0-shot, 4-5
                    choices), MMLU 5-shot (the first --mmlu-subjects subjects, --items spread over them)
    generation      GSM8K 8-shot CoT, greedy (the shared sample), --gen-items prompts

atax's side is `PrefixCachedHFLM` (the hf backend's default); lm-eval's is `HFLM` with the hf
backend's batch size (8), which is also today's generation path. Both wrap the same model object in
float32 on CPU, one warm-up call each first (untimed). Time is this process's CPU seconds (`time.process_time`: all threads, so a busy
shared machine does not inflate it); printed per benchmark: requests and tokens per CPU-second for
each side, the ratio, and per-item agreement (largest |Δ log-likelihood|, is_greedy mismatches;
for generation, identical outputs). Targets (issue 21, on SmolLM2): >= 4x requests/CPU-s on
TruthfulQA-MC1 and ARC-c, >= 2x on MMLU 5-shot, identical per-item results; generation >= 3x tokens/s
at the same outputs.

Last measured (SmolLM2, `--models builtin:smollm2-135m-instruct --items 16 --gen-items 4
--max-gen-toks 96`, one run, shared 2-core machine at load ~5): TruthfulQA-MC1 13.7x, ARC-c 3.5x,
MMLU 5.0x (max |dll| <= 4e-5, same is_greedy), GSM8K 1.9x with identical outputs (1.9-2.4x over
other runs). Before packed item rows and draft tokens: ARC-c 2.5x (same 16 items, same day); earlier
figures 4.5x TruthfulQA (8 items), 3.8x MMLU (2 subjects), 1.5x GSM8K.

    python bench/eval_throughput.py [--models builtin:tiny-llama,builtin:smollm2-135m-instruct]
        [--items 30] [--gen-items 8] [--max-gen-toks 256] [--benchmarks truthfulqa,arc_challenge,mmlu,gsm8k]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SOURCES = {  # dataset -> original release file (full test sets where present, else the sample)
    "truthfulqa": SHARED / "full" / "truthfulqa" / "mc_task.json",
    "arc_challenge": SHARED / "full" / "arc" / "ARC-Challenge-Test.jsonl",
    "mmlu": SHARED / "full" / "mmlu" / "data",
    "gsm8k": SHARED / "gsm8k" / "test.sample.jsonl",
}
LOGLIKELIHOOD = ("truthfulqa", "arc_challenge", "mmlu")


def capture_requests(benchmarks: list[str], data_dir: Path, limit: int) -> dict[str, list[Any]]:
    """The suite's lm-eval requests per benchmark (answered with placeholders only to collect them)."""
    from lm_eval.api.model import LM

    from harness.evaluate.protocols import SuiteContext
    from suites.knowledge.suite import KnowledgeOptions, KnowledgeSuite

    captured: dict[str, list[Any]] = defaultdict(list)

    class Capture(LM):
        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
            for r in requests:
                captured[r.task_name].append(r)
            return [(0.0, False)] * len(requests)

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
            return [0.0] * len(requests)

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
            for r in requests:
                captured[r.task_name].append(r)
            return [""] * len(requests)

    options = KnowledgeOptions(benchmarks=benchmarks, data_dir=data_dir, limit=limit)
    plan = KnowledgeSuite().prepare(options, SuiteContext())
    plan.run(Capture(), SuiteContext())
    by_benchmark: dict[str, list[Any]] = defaultdict(list)
    for task, requests in captured.items():
        by_benchmark[plan.tasks.get(task, task)].append((task, requests))
    return {b: _pick(b, parts) for b, parts in by_benchmark.items()}


def _pick(benchmark: str, parts: list[tuple[str, list[Any]]]) -> list[Any]:
    parts.sort()
    if benchmark == "mmlu":
        parts = parts[:ARGS.mmlu_subjects]
    return [r for _, requests in parts for r in requests]


def _items(requests: list[Any], n: int) -> list[Any]:
    """The requests of the first n documents (all their choices)."""
    docs: list[tuple[str, int]] = []
    for r in requests:
        key = (r.task_name, r.doc_id)
        if key not in docs:
            docs.append(key)
    keep = set(docs[:n])
    return [r for r in requests if (r.task_name, r.doc_id) in keep]


def _timed(call: Any, requests: list[Any]) -> tuple[list[Any], float]:
    began = time.process_time()
    out = call(requests, disable_tqdm=True)
    return out, time.process_time() - began


def _tokens(lm: Any, requests: list[Any]) -> int:
    return sum(len(lm.tok_encode(r.args[0])) + len(lm.tok_encode(r.args[1])) for r in requests)


def bench_loglikelihood(name: str, requests: list[Any], plain: Any, fast: Any) -> None:
    for lm in (plain, fast):  # untimed warm-up: first-call costs (atax's one start-up check of its cache path)
        lm.loglikelihood(requests[:2], disable_tqdm=True)
    want, plain_s = _timed(plain.loglikelihood, requests)
    got, fast_s = _timed(fast.loglikelihood, requests)
    worst = max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True))
    greedy_diff = sum(a[1] != b[1] for a, b in zip(want, got, strict=True))
    tokens = _tokens(plain, requests)
    items = len({(r.task_name, r.doc_id) for r in requests})
    print(f"  {name:<14} {items:>4} items {len(requests):>5} req | lm-eval HFLM {plain_s:7.1f} CPU-s "
          f"{len(requests) / plain_s:7.2f} req/s {tokens / plain_s:8.0f} tok/s | atax {fast_s:7.1f} CPU-s "
          f"{len(requests) / fast_s:7.2f} req/s {tokens / fast_s:8.0f} tok/s | x{plain_s / fast_s:5.2f} | "
          f"max|Δll| {worst:.1e}, is_greedy differs {greedy_diff} [{fast.engine_paths.get('loglikelihood')}]")


def bench_generation(name: str, requests: list[Any], plain: Any, fast: Any) -> None:
    want, plain_s = _timed(plain.generate_until, requests)
    got, fast_s = _timed(fast.generate_until, requests)
    same = sum(a == b for a, b in zip(want, got, strict=True))
    tokens = sum(len(plain.tok_encode(text)) for text in want)
    print(f"  {name:<14} {len(requests):>4} prompts, {tokens} generated tokens | today's hf backend "
          f"{plain_s:7.1f} CPU-s {tokens / plain_s:6.2f} tok/s | atax {fast_s:7.1f} CPU-s {tokens / fast_s:6.2f} tok/s"
          f" | x{plain_s / fast_s:5.2f} | identical outputs {same}/{len(requests)} "
          f"[{fast.engine_paths.get('generate_until')}]")


def main() -> None:
    import torch
    from lm_eval.models.huggingface import HFLM

    from harness.builtin import is_builtin, resolve_builtin
    from harness.evaluate.prefix_hflm import PrefixCachedHFLM
    from suites.knowledge.originals import convert

    # One thread by default: on a shared machine, idle OpenMP threads spin-waiting for a descheduled
    # partner are billed as CPU time, which would charge small forwards for the machine's load.
    torch.set_num_threads(ARGS.threads)
    benchmarks = [b for b in ARGS.benchmarks.split(",") if b]
    with tempfile.TemporaryDirectory(prefix="atax-bench-eval-") as tmp:
        data_dir = Path(tmp)
        for benchmark in benchmarks:
            convert(benchmark, SOURCES[benchmark], data_dir)
        limit = max(ARGS.items, ARGS.gen_items)
        if "mmlu" in benchmarks:
            limit = max(limit, -(-ARGS.items // ARGS.mmlu_subjects))
        requests = capture_requests(benchmarks, data_dir, limit)
    print(f"torch threads: {torch.get_num_threads()}; time = CPU seconds of this process")
    for ref in [m for m in ARGS.models.split(",") if m]:
        path = str(resolve_builtin(ref)) if is_builtin(ref) else ref
        plain = HFLM(pretrained=path, device="cpu", dtype=torch.float32, batch_size=8)
        fast = PrefixCachedHFLM(pretrained=plain.model, tokenizer=plain.tokenizer, device="cpu", batch_size=8)
        print(f"{ref} (max length {plain.max_length})")
        for benchmark in benchmarks:
            if benchmark in LOGLIKELIHOOD:
                per_item = ARGS.items
                bench_loglikelihood(benchmark, _items(requests[benchmark], per_item), plain, fast)
            else:
                prompts = _items(requests[benchmark], ARGS.gen_items)
                for r in prompts:  # the suite's cap, for CPU runs
                    r.arguments[1]["max_gen_toks"] = ARGS.max_gen_toks
                bench_generation(benchmark, prompts, plain, fast)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="builtin:tiny-llama,builtin:smollm2-135m-instruct")
    parser.add_argument("--benchmarks", default="truthfulqa,arc_challenge,mmlu,gsm8k")
    parser.add_argument("--items", type=int, default=30, help="items per log-likelihood benchmark")
    parser.add_argument("--mmlu-subjects", type=int, default=4, help="MMLU subjects the items are spread over")
    parser.add_argument("--gen-items", type=int, default=8, help="GSM8K prompts")
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is summed over them)")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = _args()
    main()
