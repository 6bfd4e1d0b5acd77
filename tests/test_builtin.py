"""The built-in tiny model and toy data: deterministic, loadable offline, resolved once from the cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from harness.builtin import BUILTIN_PREFIX, _publish_dir, builtin_names, is_builtin, resolve_builtin
from harness.builtin.tiny_model import build_tiny_llama
from harness.builtin.toy_instructions import (
    generate_toy_corpus,
    generate_toy_instructions,
    write_toy_corpus,
    write_toy_instructions,
)
from harness.errors import UserError


def _file_hashes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("atax-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATAX_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def tiny_llama(cache: Path) -> Path:
    return resolve_builtin("builtin:tiny-llama")


# --- the tiny model -------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_other_weights(tiny_llama: Path, tmp_path: Path):
    again = _file_hashes(build_tiny_llama(tmp_path / "again", seed=0))
    other = _file_hashes(build_tiny_llama(tmp_path / "other", seed=1))
    first = _file_hashes(tiny_llama)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(first)
    assert again == first, "same seed must give byte-identical files"
    assert other["model.safetensors"] != first["model.safetensors"]
    # The tokenizer does not depend on the seed, so checkpoints of all seeds share one vocabulary.
    assert other["tokenizer.json"] == first["tokenizer.json"]
    assert not any(
        str(tmp_path) in (tmp_path / "again" / name).read_text("utf-8", "replace") for name in again
    )


def test_model_loads_offline_with_specified_shape(tiny_llama: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    config = model.config
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (128, 2, 256)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (2, 2, 64)
    assert config.vocab_size == len(tokenizer)
    assert config.tie_word_embeddings is False
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    )
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert all(p.dtype == torch.float32 for p in model.parameters())

    ids = tokenizer("### Instruction:\nWhat is 2 + 3?\n\n### Response:\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


# --- the tokenizer --------------------------------------------------------------------------------

ROUND_TRIP_TEXTS = [
    "What is 37 + 45?",
    "  two leading spaces, trailing space ",
    "lines\n\nand\ttabs\r\n  indented\n",
    "def f(x):\n    return x ** 2  # comment\n",
    "Symbols: ~!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/`",
    "Zirskoxgli has a population of 79180.",
    "",
]


def test_tokenizer_round_trips_and_adds_only_bos(tiny_llama: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert tokenizer.model_max_length == 2048
    for text in ROUND_TRIP_TEXTS:
        plain = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(plain) == text
        with_special = tokenizer.encode(text)
        assert with_special == [tokenizer.bos_token_id] + plain, "Llama-style: bos prepended, no eos"
        assert tokenizer.decode(with_special, skip_special_tokens=True) == text
    # Trained on the Alpaca template, so its words are single tokens, not bytes.
    template = "Below is an instruction that describes a task."
    assert len(tokenizer.encode(template, add_special_tokens=False)) <= 10


def test_chat_template_marks_roles_and_ends_assistant_turns_with_eos(tiny_llama: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert text == "<s><|user|>\nWhat is 2 + 2?\n<|assistant|>\n4</s>\n"
    prompt = tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n") and "</s>" not in prompt
    ids = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id in ids


# --- toy data -------------------------------------------------------------------------------------

FAMILY_PATTERNS = {
    "arithmetic": r"^(What is|Compute|Calculate the value of) -?\d+ [-+*] \d+",
    "string_edit": r"the word",
    "table_lookup": r"^(Using the table|The table lists)",
    "sorting": r"^Sort ",
    "word_problem": r"How many .* have now\?$",
    "compare": r"^Which of the two numbers",
    "describe_place": r"^Write a short description",
}


def test_toy_instructions_are_deterministic_well_formed_and_mixed():
    records = generate_toy_instructions(300, seed=0)
    assert records == generate_toy_instructions(300, seed=0)
    assert records != generate_toy_instructions(300, seed=1)
    assert len(records) == 300
    for record in records:
        assert set(record) == {"instruction", "input", "output"}
        assert all(isinstance(value, str) for value in record.values())
        assert record["instruction"].strip() and record["output"].strip()
    families = {
        name
        for name, pattern in FAMILY_PATTERNS.items()
        for r in records
        if re.search(pattern, r["instruction"])
    }
    assert families == set(FAMILY_PATTERNS)
    empty_inputs = sum(not r["input"] for r in records)
    assert 0 < empty_inputs < len(records)
    assert len({len(r["output"]) for r in records}) > 20, "outputs should vary in length"


def test_toy_instruction_answers_are_correct():
    for record in generate_toy_instructions(200, seed=3):
        sum_match = re.fullmatch(r"(\d+) ([-+*]) (\d+) = (-?\d+)\.", record["output"])
        if sum_match:
            a, op, b, result = sum_match.groups()
            expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert int(result) == expected, record
        if record["instruction"].startswith("Sort "):
            numbers = [int(x) for x in record["output"].split(", ")]
            assert numbers == sorted(numbers, reverse="descending" in record["instruction"])


def test_toy_corpus_and_jsonl_writers(tmp_path: Path):
    docs = generate_toy_corpus(50, seed=0)
    assert docs == generate_toy_corpus(50, seed=0) and docs != generate_toy_corpus(50, seed=1)
    assert len(docs) == 50 and all(isinstance(d, str) and d.count(".") >= 3 for d in docs)
    corpus_rows = [
        json.loads(line) for line in write_toy_corpus(tmp_path / "c.jsonl", 50).read_text().splitlines()
    ]
    assert corpus_rows == [{"text": doc} for doc in docs]
    rows = [
        json.loads(line)
        for line in write_toy_instructions(tmp_path / "i.jsonl", 30, 2).read_text().splitlines()
    ]
    assert rows == generate_toy_instructions(30, seed=2)


# --- resolving builtin: names ----------------------------------------------------------------------


def test_resolve_builds_once_then_reuses(cache: Path):
    path = resolve_builtin("builtin:toy-instructions")
    assert path.is_relative_to(cache / "builtin")
    assert len(path.read_text().splitlines()) == 600
    mtime = path.stat().st_mtime_ns
    assert resolve_builtin("builtin:toy-instructions") == path
    assert path.stat().st_mtime_ns == mtime, "second resolve must not rebuild"
    corpus = resolve_builtin("builtin:toy-corpus")
    assert json.loads(corpus.read_text().splitlines()[0])["text"]


def test_resolve_reuses_tiny_llama_directory(tiny_llama: Path):
    weights = tiny_llama / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_builtin("builtin:tiny-llama") == tiny_llama
    assert weights.stat().st_mtime_ns == mtime
    assert not [p for p in tiny_llama.parent.iterdir() if p.name.startswith(".")], "no staging left behind"


def test_losing_a_concurrent_first_build_keeps_the_winner(tmp_path: Path):
    def build(label: str):
        def write(directory: Path) -> None:
            directory.mkdir()
            (directory / "who").write_text(label)

        return write

    final = tmp_path / "thing-v1"
    _publish_dir(final, build("first"))
    _publish_dir(final, build("second"))  # another process finishing later must not swap the directory
    assert (final / "who").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["thing-v1"]


def test_unknown_builtin_names_raise_user_error(cache: Path):
    assert is_builtin("builtin:tiny-llama") and is_builtin("builtin:xyz") and not is_builtin("gpt2")
    assert builtin_names() == ["builtin:tiny-llama", "builtin:tiny-llama-pretrained",
                               "builtin:toy-instructions", "builtin:toy-corpus", "builtin:toy-facts",
                               "builtin:smollm2-135m-instruct"]
    assert all(name.startswith(BUILTIN_PREFIX) for name in builtin_names())
    expected = ("unknown built-in 'builtin:xyz'; known: builtin:tiny-llama, builtin:tiny-llama-pretrained, "
                "builtin:toy-instructions, builtin:toy-corpus, builtin:toy-facts, "
                "builtin:smollm2-135m-instruct")
    with pytest.raises(UserError) as error:
        resolve_builtin("builtin:xyz")
    assert str(error.value) == expected
    with pytest.raises(UserError, match="unknown built-in 'tiny-llama'"):
        resolve_builtin("tiny-llama")
    assert not (cache / "builtin" / "xyz-v1").exists()


# --- the pretrained tiny model and its facts -----------------------------------------------------------

# The session's cache (conftest sets it before this module loads; the `cache` fixture above swaps in its own
# for a while): the pretrained model is built there once and shared with the quick-start test.
SESSION_CACHE = Path(os.environ["ATAX_CACHE"])


def test_pretraining_is_deterministic_and_changes_the_weights(tmp_path: Path):
    from harness.builtin.pretrain_recipe import PretrainRecipe
    from harness.builtin.pretrained import build_tiny_llama_pretrained

    short = PretrainRecipe(steps=3, batch_size=2, seq_len=32, warmup_steps=1)
    first = _file_hashes(build_tiny_llama_pretrained(tmp_path / "first", short))
    again = _file_hashes(build_tiny_llama_pretrained(tmp_path / "again", short))
    start = _file_hashes(build_tiny_llama(tmp_path / "start", seed=short.seed))
    assert again == first, "the same recipe must give byte-identical files"
    assert first["model.safetensors"] != start["model.safetensors"], "pretraining must change the weights"
    assert first["tokenizer.json"] == start["tokenizer.json"], "the tiny Llama's tokenizer, unchanged"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no staging left behind"


@pytest.mark.slow
def test_pretrained_builtin_is_built_once_under_a_lock_and_knows_facts():
    """The full recipe, in the session's cache (shared with the quick-start test): resolved twice, built
    once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.builtin.toy_facts import toy_facts

    path = resolve_builtin("builtin:tiny-llama-pretrained", cache=SESSION_CACHE)
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_builtin("builtin:tiny-llama-pretrained", cache=SESSION_CACHE) == path
    assert weights.stat().st_mtime_ns == mtime, "second resolve must not rebuild"
    assert path.with_name(path.name + ".lock").is_file()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)

    def loss(text: str) -> float:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            return float(model(ids, labels=ids).loss)

    # Its facts are far likelier than the same sentences with a wrong value.
    facts = toy_facts()[:24]
    true = [loss(f.sentence) for f in facts]
    wrong = [next(v for v in f.relation.values if v != f.value) for f in facts]
    false = [loss(f.relation.state(f.town, value)) for f, value in zip(facts, wrong, strict=True)]
    assert sum(t < f for t, f in zip(true, false, strict=True)) >= 20, (true, false)


def test_toy_facts_are_deterministic_and_the_corpus_states_every_one():
    from harness.builtin.toy_facts import N_TOWNS, RELATIONS, pretraining_documents, toy_facts

    facts = toy_facts()
    assert facts == toy_facts() and len(facts) == N_TOWNS * len(RELATIONS)
    assert len({f.town for f in facts}) == N_TOWNS
    corpus = "\n".join(pretraining_documents(facts))
    for fact in facts:
        assert fact.sentence in corpus and f"Question: {fact.question}\nAnswer: {fact.value}" in corpus
    corpus_file = resolve_builtin("builtin:toy-facts", cache=SESSION_CACHE)
    rows = [json.loads(line) for line in corpus_file.read_text().splitlines()]
    assert [r["text"] for r in rows] == pretraining_documents(facts)
