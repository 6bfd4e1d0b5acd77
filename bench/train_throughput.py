"""Useful (non-pad) training tokens per second: padded vs length-grouped vs packed micro-batches.

Same LoRA model (the engine's adapter), same samples, same steps, measured side by side in one
run. Lengths follow the TULU-v2 mix statistics (instruction 80-330 tokens, response 15-430
tokens). The target is >= 1.5x useful tokens/s for the batching atax uses by default (packed)
over plain padding.

"padded" is the usual pipeline: samples in data order, padded to the longest of the micro-batch,
an attention mask, the model's default attention. "grouped" and "packed" are what the engine
does (`plan_batching`): per-sample causal attention, packed rows up to --max-len tokens.
Rates are compared at equal micro-batch size, i.e. equal worst-case memory (micro x max-len
tokens per forward). A padded micro-batch of 1 has no padding at all; on a GPU micro-batches are
sized to fill memory, which is the setting this comparison holds fixed.

    python bench/train_throughput.py [--model builtin:tiny-llama | --random-llama 512] [--micro 4 8 16]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from harness.config.schema import DataConfig, LoraConfig
from harness.data.loading import load_instruction_data
from harness.data.templates import IGNORE_INDEX, TokenizedExample, tokenize_records
from harness.modeling import load_causal_lm, load_tokenizer
from harness.train.attention import plan_batching
from harness.train.batching import make_micro_batches
from harness.train.cpu_memory import keep_freed_memory
from harness.train.loss import summed_token_loss

# TULU-v2-like mixture: subset means spread over the ranges (instruction 80-330 tokens,
# response 15-430), long inputs paired with short outputs (FLAN-like) through short inputs with
# long outputs (ShareGPT-like). Within a subset lengths are log-normal with the spread measured
# on the real Alpaca and Code-Alpaca samples: coefficient of variation ~0.4 for prompts and ~1.0
# for responses (`--data` runs on real records instead).
SUBSETS = 6
PROMPT_MEANS, RESPONSE_MEANS = (80, 330), (430, 15)
PROMPT_CV, RESPONSE_CV = 0.4, 1.0


def synthetic_examples(n: int, vocab: int, seed: int, max_len: int) -> list[TokenizedExample]:
    rng = random.Random(seed)
    examples = []
    while len(examples) < n:
        subset = rng.randrange(SUBSETS) / (SUBSETS - 1)
        prompt = _lognormal(rng, _between(PROMPT_MEANS, subset), PROMPT_CV)
        response = _lognormal(rng, _between(RESPONSE_MEANS, subset), RESPONSE_CV)
        if prompt >= max_len:
            continue  # the engine drops prompts that leave no room for a response
        response = min(response, max_len - prompt)  # and cuts responses at max_len
        ids = [rng.randrange(3, vocab) for _ in range(prompt + response)]
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def _between(bounds: tuple[int, int], t: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * t


def _lognormal(rng: random.Random, mean: float, cv: float) -> int:
    sigma = math.sqrt(math.log(1 + cv * cv))
    return max(1, round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)))


def real_examples(path: str, tokenizer, max_len: int, n: int) -> list[TokenizedExample]:
    """The first n records of an instruction file (any format atax reads), tokenised as the engine does."""
    data = load_instruction_data(DataConfig(source=path))
    examples = tokenize_records(data.records, tokenizer, "alpaca", max_len).examples
    if len(examples) < n:
        raise SystemExit(f"--data: {path} gives {len(examples)} examples; --steps x --batch needs {n}")
    return examples[:n]


@dataclass
class Rate:
    useful_per_s: float
    computed: int  # token slots the forward passes ran over (rows x length), padding included
    useful: int


def measure(model, examples, how: str, batch: int, micro: int, max_len: int, pad_id: int,
            steps: int, row_length: int) -> Rate:
    device = torch.device("cpu")
    useful, computed, start = 0, 0, time.perf_counter()
    for step in range(steps):
        chunk = examples[step * batch:(step + 1) * batch]
        n_loss = sum(e.n_loss_tokens for e in chunk)
        for mb in make_micro_batches(chunk, how, micro, max_len, pad_id, row_length):
            (summed_token_loss(model, mb, device) / n_loss).backward()
            useful += mb.n_real_tokens
            computed += mb.input_ids.numel()
        model.zero_grad(set_to_none=True)
    return Rate(useful / (time.perf_counter() - start), computed, useful)


def random_llama(hidden: int, vocab: int = 32000) -> torch.nn.Module:
    """A randomly initialised Llama of a realistic shape (no download): 4 layers, head size 64."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=4,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, vocab_size=vocab,
                         max_position_embeddings=2048)
    return LlamaForCausalLM(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny-llama", help="hub id, local dir or builtin:")
    parser.add_argument("--random-llama", type=int, metavar="HIDDEN",
                        help="instead of --model, a random 4-layer Llama of this hidden size, vocab 32000")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--micro", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--data", help="an instruction file (JSON/JSONL/parquet) to take real lengths from")
    parser.add_argument("--rounds", type=int, default=3, help="repeats per cell; the median is shown")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.random_llama:
        model, vocab, pad_id, name = random_llama(args.random_llama), 32000, 0, f"random-llama-{args.random_llama}"
    else:
        tokenizer = load_tokenizer(args.model)
        model = load_causal_lm(args.model, None, "float32", torch.device("cpu"))
        vocab, pad_id, name = len(tokenizer), tokenizer.pad_token_id, args.model
    keep_freed_memory(torch.device("cpu"))  # as the engine does
    default_attention = model.config._attn_implementation
    plan = plan_batching(model, "packed", torch.device("cpu"), vocab, args.max_len)
    model = get_peft_model(model, PeftLoraConfig(**_engine_lora())).train()
    n = args.steps * args.batch
    if args.data:
        if args.random_llama:
            raise SystemExit("--data needs the model's tokenizer: use it with --model")
        examples, name = real_examples(args.data, tokenizer, args.max_len, n), f"{name} on {args.data}"
    else:
        examples = synthetic_examples(n, vocab, seed=0, max_len=args.max_len)

    def rate(how: str, micro: int, steps: int = args.steps, data: list = examples) -> Rate:
        # the baseline runs as a stock pipeline would; ours as the engine plans it
        model.set_attn_implementation(default_attention if how == "padded" else plan.attention)
        return measure(model, data, how, args.batch, micro, args.max_len, pad_id, steps, plan.row_length)

    for how in ("padded", "packed"):  # warm-up
        rate(how, 4, 1, examples[: args.batch])
    print(f"{name}: {len(examples)} samples, batch {args.batch}, {args.steps} steps, median of {args.rounds} "
          f"interleaved rounds; padded: {default_attention} attention, grouped/packed: {plan.attention} "
          f"attention, packed rows of {plan.row_length} tokens")
    print("useful tokens/s; 'padding' = share of the padded batches' token slots that are padding, "
          "'ideal' = the speed-up from dropping it alone")
    print(f"{'micro':>5} {'padded':>9} {'grouped':>9} {'packed':>9} {'padding':>8} {'ideal':>6} "
          f"{'grouped/pad':>11} {'packed/pad':>10}")
    modes = ("padded", "grouped", "packed")
    for micro in args.micro:
        runs: dict[str, list[Rate]] = {how: [] for how in modes}
        for _ in range(args.rounds):  # interleaved, so drifts in machine speed hit every mode alike
            for how in modes:
                runs[how].append(rate(how, micro))
        speed = {how: statistics.median(r.useful_per_s for r in runs[how]) for how in modes}
        padded = runs["padded"][0]
        print(f"{micro:>5} {speed['padded']:>9,.0f} {speed['grouped']:>9,.0f} {speed['packed']:>9,.0f} "
              f"{1 - padded.useful / padded.computed:>8.0%} {padded.computed / padded.useful:>5.2f}x "
              f"{speed['grouped'] / speed['padded']:>10.2f}x {speed['packed'] / speed['padded']:>9.2f}x")


def _engine_lora() -> dict:
    lora = LoraConfig()  # the paper's defaults, as the engine uses them
    return {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": list(lora.target_modules), "task_type": "CAUSAL_LM"}


if __name__ == "__main__":
    main()
