"""Procedurally generated instruction data and pre-training text, so examples and tests need no download.

Every word, place and fact is invented here from a seeded `random.Random`; no third-party text is embedded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from harness.atomic import write_text_atomic

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "gl", "sk", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "x"]
_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "grey", "white"]
_THINGS = ["apples", "stones", "coins", "marbles", "shells", "books", "lanterns", "seeds"]
_NAMES_OF_KIND = ["town", "village", "river", "mountain", "island", "valley"]


def _made_up_word(rng: random.Random, syllables: int | None = None) -> str:
    count = syllables if syllables is not None else rng.randint(2, 3)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(count))


def _record(instruction: str, output: str, input_text: str = "") -> dict:
    return {"instruction": instruction, "input": input_text, "output": output}


def _arithmetic(rng: random.Random) -> dict:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice(["+", "-", "*"])
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    phrasing = rng.choice(
        ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate the value of {a} {op} {b}."]
    )
    return _record(phrasing.format(a=a, op=op, b=b), f"{a} {op} {b} = {result}.")


def _string_edit(rng: random.Random) -> dict:
    word = _made_up_word(rng)
    kind = rng.choice(["reverse", "upper", "count", "length"])
    letter = rng.choice(word)
    times = word.count(letter)
    # `{w}` is the word inline or "the word below" with the word in `input`, so both template shapes occur.
    instruction, output = {
        "reverse": ("Reverse the letters of {w}.", f"The word reversed is {word[::-1]}."),
        "upper": ("Write {w} in uppercase letters.", word.upper()),
        "count": (
            f"Count how many times the letter '{letter}' appears in {{w}}.",
            f"The letter '{letter}' appears {times} time{'s' if times != 1 else ''}.",
        ),
        "length": ("How many letters are in {w}?", f"The word {word} has {len(word)} letters."),
    }[kind]
    if rng.random() < 0.5:
        return _record(instruction.format(w=f"the word '{word}'"), output)
    return _record(instruction.format(w="the word below"), output, word)


def _table_lookup(rng: random.Random) -> dict:
    towns = sorted({_made_up_word(rng).capitalize() for _ in range(rng.randint(3, 6))})
    attribute = rng.choice(["population", "colour"])
    if attribute == "population":
        values = {town: str(rng.randint(120, 98000)) for town in towns}
    else:
        values = {town: rng.choice(_COLOURS) for town in towns}
    table = "\n".join(f"{town}: {values[town]}" for town in towns)
    town = rng.choice(towns)
    if attribute == "population":
        return _record(
            f"Using the table, what is the population of {town}?",
            f"{town} has a population of {values[town]}.",
            table,
        )
    return _record(
        f"The table lists the colour of the roofs in each town. What colour are the roofs in {town}?",
        f"The roofs in {town} are {values[town]}.",
        table,
    )


def _sorting(rng: random.Random) -> dict:
    numbers = [rng.randint(0, 500) for _ in range(rng.randint(3, 10))]
    descending = rng.random() < 0.3
    order = "descending" if descending else "ascending"
    listed = ", ".join(map(str, numbers))
    answer = ", ".join(map(str, sorted(numbers, reverse=descending)))
    if rng.random() < 0.5:
        return _record(f"Sort the following numbers in {order} order.", answer, listed)
    return _record(f"Sort these numbers in {order} order: {listed}", answer)


def _word_problem(rng: random.Random) -> dict:
    person, place = _made_up_word(rng).capitalize(), _made_up_word(rng).capitalize()
    thing = rng.choice(_THINGS)
    start, got, lost = rng.randint(3, 40), rng.randint(1, 30), rng.randint(0, 10)
    question = (
        f"{person} lives in {place} and has {start} {thing}. {person} finds {got} more {thing} "
        f"and then gives away {lost}. How many {thing} does {person} have now?"
    )
    after_find = start + got
    answer = (
        f"{person} starts with {start} {thing}. After finding {got} more, {person} has "
        f"{start} + {got} = {after_find}. After giving away {lost}, {person} has "
        f"{after_find} - {lost} = {after_find - lost}. The answer is {after_find - lost}."
    )
    return _record(question, answer)


def _compare(rng: random.Random) -> dict:
    a, b = rng.sample(range(1, 1000), 2)
    bigger = max(a, b)
    return _record("Which of the two numbers is larger?", f"{bigger} is larger.", f"{a} and {b}")


def _describe_place(rng: random.Random) -> dict:
    name = _made_up_word(rng).capitalize()
    kind = rng.choice(_NAMES_OF_KIND)
    colour = rng.choice(_COLOURS)
    n_sentences = rng.randint(1, 3)
    facts = [
        f"{name} is a small {kind} known for its {colour} {rng.choice(_THINGS)}.",
        f"About {rng.randint(50, 9000)} people visit {name} every year.",
        f"The oldest path in {name} is {rng.randint(2, 40)} kilometres long.",
    ][:n_sentences]
    return _record(f"Write a short description of the invented {kind} called {name}.", " ".join(facts))


_FAMILIES: dict[str, Callable[[random.Random], dict]] = {
    "arithmetic": _arithmetic,
    "string_edit": _string_edit,
    "table_lookup": _table_lookup,
    "sorting": _sorting,
    "word_problem": _word_problem,
    "compare": _compare,
    "describe_place": _describe_place,
}


def generate_toy_instructions(n: int = 600, seed: int = 0) -> list[dict]:
    """`n` Alpaca records {"instruction", "input", "output"}, a deterministic mix of all task families."""
    rng = random.Random(seed)
    families = list(_FAMILIES.values())
    # Cycle through families so every family appears even for small n, then shuffle the order.
    records = [families[i % len(families)](rng) for i in range(n)]
    rng.shuffle(records)
    return records


def generate_toy_corpus(n_docs: int = 200, seed: int = 0) -> list[str]:
    """`n_docs` plain paragraphs of invented facts, the stand-in for pre-training text (replay, EWC)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        name = _made_up_word(rng).capitalize()
        kind = rng.choice(_NAMES_OF_KIND)
        neighbour = _made_up_word(rng).capitalize()
        sentences = [
            f"{name} is a {kind} in the land of {neighbour}.",
            f"It was first mapped in the year {rng.randint(900, 2020)}.",
            f"The {kind} is home to {rng.randint(10, 90000)} people and {rng.randint(2, 400)} {rng.choice(_THINGS)}.",
            f"Most houses in {name} have {rng.choice(_COLOURS)} doors.",
            f"A walk from {name} to {neighbour} takes about {rng.randint(1, 12)} hours.",
            f"Every spring the people of {name} count {rng.randint(100, 5000)} {rng.choice(_THINGS)} by the road.",
            f"The word {_made_up_word(rng)} means {rng.choice(_COLOURS)} in the old speech of {name}.",
        ]
        rng.shuffle(sentences)
        docs.append(" ".join(sentences[: rng.randint(3, len(sentences))]))
    return docs


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path = Path(path)
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_toy_instructions(path: Path, n: int = 600, seed: int = 0) -> Path:
    """Write `generate_toy_instructions(n, seed)` as JSONL to `path` (atomically); return `path`."""
    return _write_jsonl(path, generate_toy_instructions(n, seed))


def write_toy_corpus(path: Path, n_docs: int = 200, seed: int = 0) -> Path:
    """Write `generate_toy_corpus(n_docs, seed)` as JSONL rows {"text": ...} to `path`; return `path`."""
    return _write_jsonl(path, [{"text": doc} for doc in generate_toy_corpus(n_docs, seed)])
