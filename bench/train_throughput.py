"""Useful (non-pad) training tokens per second: padded vs length-grouped vs packed micro-batches.

Same model, same samples, same steps, measured side by side in one run. Lengths follow the
TULU-v2 mix statistics (instruction 80-330 tokens, response 15-430 tokens). The target is
>= 1.5x useful tokens/s for the batching atax uses by default over plain padding.

    python bench/train_throughput.py [--model builtin:tiny-llama] [--steps 6] [--batch 16] [--micro 8]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from harness.data.templates import IGNORE_INDEX, TokenizedExample
from harness.modeling import load_causal_lm, load_tokenizer
from harness.train.batching import make_micro_batches, packed_row_length
from harness.train.loss import summed_token_loss


def synthetic_examples(n: int, vocab: int, seed: int) -> list[TokenizedExample]:
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        prompt, response = rng.randint(80, 330), rng.randint(15, 430)
        ids = [rng.randrange(3, vocab) for _ in range(prompt + response)]
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def measure(model, examples, how: str, batch: int, micro: int, max_len: int, pad_id: int,
            steps: int) -> tuple[float, int]:
    device = torch.device("cpu")
    useful, start = 0, time.perf_counter()
    for step in range(steps):
        chunk = examples[step * batch:(step + 1) * batch]
        n_loss = sum(e.n_loss_tokens for e in chunk)
        row_length = packed_row_length(model.config.hidden_size, max_len)
        for mb in make_micro_batches(chunk, how, micro, max_len, pad_id, row_length):
            (summed_token_loss(model, mb, device) / n_loss).backward()
            useful += mb.n_real_tokens
        model.zero_grad(set_to_none=True)
    return useful / (time.perf_counter() - start), useful


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
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.random_llama:
        model, vocab, pad_id, name = random_llama(args.random_llama), 32000, 0, f"random-llama-{args.random_llama}"
    else:
        tokenizer = load_tokenizer(args.model)
        model = load_causal_lm(args.model, None, "float32", torch.device("cpu"))
        vocab, pad_id, name = len(tokenizer), tokenizer.pad_token_id, args.model
    model.train()
    examples = synthetic_examples(args.steps * args.batch, vocab, seed=0)
    measure(model, examples[: args.batch], "padded", args.batch, 4, args.max_len, pad_id, 1)  # warm-up
    print(f"{name}: {len(examples)} samples, batch {args.batch}, {args.steps} steps, useful tokens/s")
    print(f"{'micro':>5} {'padded':>10} {'grouped':>10} {'packed':>10} {'grouped/pad':>12} {'packed/pad':>11}")
    best = {}
    for micro in args.micro:
        rates = {how: measure(model, examples, how, args.batch, micro, args.max_len, pad_id, args.steps)[0]
                 for how in ("padded", "grouped", "packed")}
        for how, rate in rates.items():
            best[how] = max(best.get(how, 0.0), rate)
        print(f"{micro:>5} {rates['padded']:>10,.0f} {rates['grouped']:>10,.0f} {rates['packed']:>10,.0f} "
              f"{rates['grouped'] / rates['padded']:>11.2f}x {rates['packed'] / rates['padded']:>10.2f}x")
    print(f"best of each: padded {best['padded']:,.0f}, grouped {best['grouped']:,.0f} "
          f"({best['grouped'] / best['padded']:.2f}x), packed {best['packed']:,.0f} "
          f"({best['packed'] / best['padded']:.2f}x)")


if __name__ == "__main__":
    main()
