"""Build the tiny Llama model and its byte-level BPE tokenizer locally, the offline stand-in for a real base model.

The directory is an ordinary Hugging Face model directory, byte-identical for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.atomic import atomic_dir
from harness.builtin.toy_instructions import generate_toy_corpus, generate_toy_instructions
from harness.data.templates import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT

if TYPE_CHECKING:  # transformers is imported only when a build runs
    from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 1000
MAX_LENGTH = 2048
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# Role markers are plain text rather than added special tokens: the model is untrained, so they only
# need to tokenize stably. A Llama-2-style template starts with bos because the tokenizer is called
# with add_special_tokens=False on rendered chats (transformers and vLLM both do).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Invented snippets in the shapes benchmark prompts take (few-shot Q/A, multiple choice, code), so that
# those prompts tokenize into merged pieces rather than single bytes.
_BENCHMARK_SHAPES = [
    "Question: {q}\nAnswer: Let's think step by step. {a} The answer is {n}.",
    "Question: {q}\nA. {n}\nB. {m}\nC. {k}\nD. none of these\nAnswer: A",
    'def solve(x):\n    """Return {q}"""\n    if x > {n}:\n        return x - {m}\n    else:\n        return x + {k}\n',
    "import math\n\nclass Counter:\n    def __init__(self):\n        self.total = {n}\n\n"
    "    def add(self, value):\n        for i in range(value):\n            self.total += i\n"
    "        while self.total % {m} != 0:\n            self.total -= 1\n        return self.total\n",
    "Q: Is {n} greater than {m}? True or False?\nA: {a}\n",
    "Let x = {n}. Then 2 * x + {m} = y, so y / 2 = {k} and x ** 2 >= 0. print(y)\n",
    "<|system|>\n{a}\n<|user|>\n{q}\n<|assistant|>\n{a}</s>\n",
]


def _tokenizer_training_text() -> list[str]:
    records = generate_toy_instructions(600, seed=0)
    texts = []
    for record in records:
        template = ALPACA_PROMPT if record["input"] else ALPACA_PROMPT_NO_INPUT
        texts.append(template.format(**record) + record["output"])
    texts.extend(generate_toy_corpus(200, seed=0))
    for i, record in enumerate(records[:140]):
        shape = _BENCHMARK_SHAPES[i % len(_BENCHMARK_SHAPES)]
        texts.append(
            shape.format(q=record["instruction"], a=record["output"], n=i, m=i * 7 % 97, k=i * 13 % 89)
        )
    return texts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train the byte-level BPE tokenizer and wrap it for transformers (nothing is written).

    The tokenizer does not depend on the model seed: models of different seeds share one vocabulary.
    """
    # BpeTrainer is deterministic here without pinning threads: word counts are exact sums, the byte
    # alphabet gets sorted ids, and equal-count pairs are broken by pair id. (Its known hash-order
    # nondeterminism, huggingface/tokenizers#1794, only affects continuing-subword prefixes, unused here.)
    # Checked with 1, 2 and 8 rayon threads and random PYTHONHASHSEED; tests compare file hashes.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    # add_prefix_space=False keeps decode(encode(x)) == x; byte-level means no text is ever unknown.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tokenizer_training_text(), trainer=trainer)
    # Llama tokenizers prepend bos (and no eos) to every encoded text; we do the same so that code
    # handling bos (SFT label masking, lm-eval, vLLM prompts) is exercised as it will be on Llama-2.
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
        clean_up_tokenization_spaces=False,  # the default cleanup would turn " ." into "." and break round trips
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_llama(out_dir: Path, seed: int = 0) -> Path:
    """Write tokenizer + randomly initialised 2-layer Llama (hidden 128, head_dim 64) to `out_dir`, atomically."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention needs head size >= 64
        intermediate_size=256,
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32)
    generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.generation_config = generation_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _use_portable_tokenizer_class(tmp / "tokenizer_config.json")
    return out_dir


def _use_portable_tokenizer_class(path: Path) -> None:
    # transformers 5 writes its new class name "TokenizersBackend", which transformers 4 (e.g. in a
    # separate vLLM environment) cannot resolve; "PreTrainedTokenizerFast" loads the same tokenizer in both.
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
