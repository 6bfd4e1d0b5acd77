"""Dense merge throughput and peak memory: atax's streamed merge vs loading all K state dicts.

Generates a random Llama of ~100M parameters (fp32 safetensors) and K dense "fine-tuned"
variants (base + noise), then merges K = 2, 4, 8 of them with average, ties, dare and
parameter_selection. Each merge runs in a fresh subprocess so its peak RSS is its own; the
naive approach (load_file of every model, merge tensor by tensor, save_file) runs beside it.
Target: streamed peak RSS <= 1.5 x one checkpoint's size for every K. Also times the exact
LoRA average, which should scale with adapter size, not model size.

    python bench/merge_throughput.py [--hidden 768] [--layers 8] [--ks 2 4 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPS = {"average": {}, "ties": {"density": 0.5}, "dare": {"p": 0.5}, "parameter_selection": {}}

CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from harness import merge
args = json.loads(sys.argv[1])
start = time.perf_counter()
inputs = [Path(p) for p in args["inputs"]]
out = Path(args["out"]); out.mkdir(parents=True, exist_ok=True)
op = merge.get(args["op"])
weights = [1 / len(inputs)] * len(inputs) if inputs and args["op"] in ("average", "parameter_selection") else None
if args["mode"] == "streamed":
    from harness.merge.dense import merge_dense
    merge_dense(Path(args["base"]), inputs, op, out, weights=weights, params=args["params"], seed=0)
elif args["mode"] == "naive":
    from safetensors.torch import load_file, save_file
    base = load_file(str(Path(args["base"]) / "model.safetensors"))
    models = [load_file(str(p / "model.safetensors")) for p in inputs]
    merged = {n: op([m[n] for m in models], base=t, weights=weights, seed=0, **args["params"]) for n, t in base.items()}
    save_file(merged, str(out / "model.safetensors"))
elif args["mode"] == "idle":
    pass
# VmHWM is this process image's own peak; ru_maxrss would carry the parent's peak across exec.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": hwm_kb / 1024}))
"""


def make_models(workdir: Path, hidden: int, layers: int, k_max: int) -> tuple[Path, list[Path], int]:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, vocab_size=32000)
    torch.manual_seed(0)
    state = {n: t.contiguous() for n, t in LlamaForCausalLM(config).state_dict().items()}
    base = workdir / "base"
    base.mkdir(parents=True, exist_ok=True)
    save_file(state, str(base / "model.safetensors"))
    config.save_pretrained(base)
    size = sum(t.numel() * t.element_size() for t in state.values())
    inputs = []
    for i in range(k_max):
        generator = torch.Generator().manual_seed(i + 1)
        variant = {n: t + 0.01 * torch.randn(t.shape, generator=generator) for n, t in state.items()}
        path = workdir / f"model-{i}"
        path.mkdir(exist_ok=True)
        save_file(variant, str(path / "model.safetensors"))
        inputs.append(path)
        del variant
    return base, inputs, size


def run_child(**args) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def lora_average_timing(hidden: int, layers: int, ranks: int = 16) -> list[tuple[int, float, float]]:
    """(K, adapter MB, seconds) of the exact LoRA average on adapters of this model's FFN shapes."""
    import torch

    from harness.merge.adapters import Adapter, LoraModule
    from harness.merge.lora import exact_average

    inter = hidden * 8 // 3
    rows = []
    for k in (2, 4, 8):
        adapters = []
        for i in range(k):
            g = torch.Generator().manual_seed(i)
            modules = {}
            for layer in range(layers):
                for proj, (out_f, in_f) in {"gate_proj": (inter, hidden), "up_proj": (inter, hidden),
                                            "down_proj": (hidden, inter)}.items():
                    modules[f"model.layers.{layer}.mlp.{proj}.weight"] = LoraModule(
                        torch.randn(ranks, in_f, generator=g), torch.randn(out_f, ranks, generator=g), 1.0)
            adapters.append(Adapter(Path("."), {"r": ranks, "lora_alpha": ranks, "target_modules": []}, modules))
        mb = sum((m.a.numel() + m.b.numel()) * 4 for a in adapters for m in a.modules.values()) / 2 ** 20
        start = time.perf_counter()
        exact_average(adapters)
        rows.append((k, mb, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--ops", nargs="+", default=list(OPS))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="atax-merge-bench-"))
    base, inputs, size = make_models(workdir, args.hidden, args.layers, max(args.ks))
    size_mb = size / 2 ** 20
    idle = run_child(mode="idle", base=str(base), inputs=[], out=str(workdir / "idle"), op="average", params={})
    print(f"checkpoint: {size / 4 / 1e6:.0f}M parameters, {size_mb:.0f} MB (fp32); "
          f"a python+torch process alone peaks at {idle['peak_rss_mb']:.0f} MB RSS")
    print(f"{'K':>2} {'op':<20} {'streamed s':>10} {'MB/s':>7} {'peak MB':>8} {'x ckpt':>6}   "
          f"{'naive s':>8} {'peak MB':>8} {'x ckpt':>6}")
    for k in args.ks:
        for op in args.ops:
            common = dict(base=str(base), inputs=[str(p) for p in inputs[:k]], op=op, params=OPS[op])
            s = run_child(mode="streamed", out=str(workdir / f"s-{k}-{op}"), **common)
            n = run_child(mode="naive", out=str(workdir / f"n-{k}-{op}"), **common)
            read_mb = (k + 1) * size_mb
            print(f"{k:>2} {op:<20} {s['seconds']:>10.1f} {read_mb / s['seconds']:>7.0f} {s['peak_rss_mb']:>8.0f} "
                  f"{s['peak_rss_mb'] / size_mb:>6.2f}   {n['seconds']:>8.1f} {n['peak_rss_mb']:>8.0f} "
                  f"{n['peak_rss_mb'] / size_mb:>6.2f}")
    print("exact LoRA average (rank 16 on the FFN projections):")
    for k, mb, seconds in lora_average_timing(args.hidden, args.layers):
        print(f"  K={k}: {mb:.0f} MB of adapters in {seconds * 1000:.0f} ms ({mb / seconds:.0f} MB/s)")
    print(f"(files in {workdir})")


if __name__ == "__main__":
    main()
