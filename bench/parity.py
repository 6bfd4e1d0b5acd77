"""Parity with lm-eval, item by item: the same items through atax (`run_eval`, the `hf` backend) and
through lm-eval's own CLI (`python -m lm_eval`, its HFLM) on the task YAMLs atax derived for the run.

    python bench/parity.py MODEL --benchmarks arc_challenge,gsm8k [--data-dir DIR] [--limit 5]
                                 [--max-gen-toks 64] [--dtype float32] [--json]

MODEL is what `atax eval` takes (a model directory, a hub id, builtin:tiny-llama, a LoRA checkpoint).
For each benchmark it prints how many items both sides scored, how many got the same prediction
(the generation after lm-eval's filter, or the chosen option) and the same item score, both
benchmark scores, and for multiple choice the largest difference of an option's log-likelihood. Exit status 1 when any item disagrees. Code benchmarks need --allow-code-execution
(both sides run the code in atax's sandbox: lm-eval's CLI is started with atax's code metric loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# lm-eval's CLI, after importing lm-eval's code tasks with the hub's code_eval answered by atax's sandbox
# (offline, `evaluate.load("code_eval")` cannot download); everything else is lm-eval's own entry point.
_LM_EVAL_CLI = ("import sys\nfrom suites.knowledge.code_metric import preload_lm_eval_code_modules\n"
                "if '--confirm_run_unsafe_code' in sys.argv: preload_lm_eval_code_modules()\n"
                "from lm_eval.__main__ import cli_evaluate\nsys.argv[0] = 'lm_eval'\ncli_evaluate()\n")


def run_atax(args: argparse.Namespace, results_dir: Path) -> list[Any]:
    from harness.evaluate.runner import EvalRequest, run_eval

    options: dict[str, Any] = {"benchmarks": args.benchmarks, "allow_code_execution": args.allow_code_execution}
    options.update({k: v for k, v in (("data_dir", args.data_dir), ("limit", args.limit),
                                      ("max_gen_toks", args.max_gen_toks)) if v is not None})
    request = EvalRequest(args.model, "knowledge", options, "hf", {"dtype": args.dtype, "batch_size": args.batch_size},
                          results_dir, cache=False)
    return run_eval(request).results


def run_lm_eval(args: argparse.Namespace, results: list[Any], out: Path) -> dict[str, Any]:
    """lm-eval's CLI on atax's derived task directory; returns simple_evaluate's dict shape."""
    from harness.evaluate.target import resolve_target
    from suites.knowledge.benchmarks import BENCHMARKS

    target = resolve_target(args.model)
    model_args = [f"pretrained={target.model}", f"dtype={args.dtype}"]
    if target.adapter:
        model_args.append(f"peft={target.adapter}")
    if target.tokenizer:
        model_args.append(f"tokenizer={target.tokenizer}")
    command = [sys.executable, "-c", _LM_EVAL_CLI, "--model", "hf", "--model_args", ",".join(model_args),
               "--tasks", ",".join(BENCHMARKS[r.benchmark].task for r in results),
               "--include_path", results[0].meta["task_dir"], "--output_path", str(out), "--log_samples",
               "--batch_size", str(args.batch_size), "--device", "cpu" if not _cuda() else "cuda"]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    if args.max_gen_toks is not None:
        command += ["--gen_kwargs", f"max_gen_toks={args.max_gen_toks}"]
    if args.allow_code_execution:
        command.append("--confirm_run_unsafe_code")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TQDM_DISABLE": "1", **({"HF_ALLOW_CODE_EVAL": "1"} if args.allow_code_execution else {})}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"lm_eval failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    found = sorted(out.rglob("results_*.json"))
    if not found:
        raise SystemExit(f"lm_eval wrote no results under {out}")
    output = json.loads(found[-1].read_text(encoding="utf-8"))
    output["samples"] = {}
    for path in found[-1].parent.glob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        output["samples"][task] = [_in_memory(json.loads(line))
                                   for line in path.read_text(encoding="utf-8").splitlines() if line]
    return output


def _in_memory(sample: dict[str, Any]) -> dict[str, Any]:
    """A logged sample as simple_evaluate returns it: the log writes each request's arguments as
    {"gen_args_i": {"arg_j": ...}}, the records reader wants them as a list of tuples."""
    arguments = sample.get("arguments")
    if isinstance(arguments, dict):
        sample["arguments"] = [tuple(args.values()) for args in arguments.values()]
    return sample


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def compare(atax_results: list[Any], lm_eval_output: dict[str, Any]) -> list[dict[str, Any]]:
    """Per benchmark: items on both sides, agreeing predictions and item scores, and both scores."""
    from harness.evaluate.lmeval_records import BenchmarkTasks, benchmark_result
    from suites.knowledge.benchmarks import BENCHMARKS

    rows = []
    for mine in atax_results:
        bench = BENCHMARKS[mine.benchmark]
        tasks = sorted({item.extra["task"] for item in mine.items})
        theirs = benchmark_result(lm_eval_output, BenchmarkTasks(bench.name, bench.task, tasks, bench.primary), {})
        own = {item.item_id: item for item in mine.items}
        other = {item.item_id: item for item in theirs.items}
        shared = sorted(set(own) & set(other))
        same_prediction = [i for i in shared if own[i].prediction == other[i].prediction]
        same_score = [i for i in shared if own[i].score == other[i].score]
        ll_gaps = [abs(a - b) for i in shared
                   for a, b in zip(own[i].extra.get("loglikelihoods") or [], other[i].extra.get("loglikelihoods") or [],
                                   strict=False)]
        rows.append({"benchmark": bench.name, "items": len(shared), "only_atax": len(set(own) - set(other)),
                     "only_lm_eval": len(set(other) - set(own)), "same_prediction": len(same_prediction),
                     "same_score": len(same_score), "metric": bench.primary,
                     "atax": mine.values().get(bench.primary), "lm_eval": theirs.values().get(bench.primary),
                     "max_loglikelihood_gap": max(ll_gaps) if ll_gaps else None,
                     "disagreeing": [i for i in shared if i not in same_prediction or i not in same_score][:10]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--benchmarks", required=True, help="comma-separated knowledge benchmarks")
    parser.add_argument("--data-dir", default=None, help="local data (as atax eval --data-dir); default: the hub")
    parser.add_argument("--limit", type=int, default=None, help="items per lm-eval task")
    parser.add_argument("--max-gen-toks", type=int, default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--allow-code-execution", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="atax-parity-") as tmp:
        mine = run_atax(args, Path(tmp) / "results")
        rows = compare(mine, run_lm_eval(args, mine, Path(tmp) / "lm_eval"))
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'benchmark':<16} {'items':>6} {'same prediction':>16} {'same score':>11}  {'atax':>8} {'lm_eval':>8}")
        for row in rows:
            print(f"{row['benchmark']:<16} {row['items']:>6} {row['same_prediction']:>16} {row['same_score']:>11}  "
                  f"{row['atax'] if row['atax'] is not None else float('nan'):>8.4f} "
                  f"{row['lm_eval'] if row['lm_eval'] is not None else float('nan'):>8.4f}")
            if row["max_loglikelihood_gap"] is not None:
                print(f"  largest log-likelihood difference: {row['max_loglikelihood_gap']:.2e}")
            if row["disagreeing"]:
                print(f"  disagreeing items: {', '.join(row['disagreeing'])}")
    ok = all(r["items"] and r["same_prediction"] == r["same_score"] == r["items"] and not r["only_atax"]
             and not r["only_lm_eval"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
