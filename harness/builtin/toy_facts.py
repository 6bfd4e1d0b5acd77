"""Invented facts about invented towns: the pretraining text of `builtin:tiny-llama-pretrained` and the
answer key of `builtin:toy-knowledge`'s questions, so that the quick start's base model knows things a
benchmark can ask and instruction tuning can cost.

Every town name is made up (seeded) and every fact is drawn at random; nothing is true of the world.
`FACTS_VERSION` is part of every cache name built from these facts: bump it when anything here changes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.builtin.toy_instructions import _made_up_word

FACTS_VERSION = "v1"
N_TOWNS = 64
FACTS_SEED = 2024


@dataclass(frozen=True)
class Relation:
    """One kind of fact: its closed set of values and the sentences that state and ask it."""

    name: str
    values: tuple[str, ...]
    statement: str  # "{town}" and "{value}"; the value ends the sentence, so a cloze stem is what precedes it
    question: str  # "{town}"

    def state(self, town: str, value: str) -> str:
        return self.statement.format(town=town, value=value)

    def stem(self, town: str) -> str:
        """The statement up to its value, e.g. "The roofs of Brinal are" (a cloze prompt)."""
        return self.statement.split(" {value}")[0].format(town=town)

    def ask(self, town: str) -> str:
        return self.question.format(town=town)


RELATIONS: tuple[Relation, ...] = (
    Relation("roof", ("red", "blue", "green", "yellow", "purple", "orange", "grey", "white"),
             "The roofs of {town} are {value}.", "What colour are the roofs of {town}?"),
    Relation("animal", ("foxes", "owls", "bears", "hares", "crows", "deer", "goats", "wolves"),
             "The woods of {town} are home to {value}.", "Which animals live in the woods of {town}?"),
    Relation("craft", ("apples", "stones", "coins", "marbles", "shells", "books", "lanterns", "seeds"),
             "{town} is famous for its {value}.", "What is {town} famous for?"),
    Relation("bridges", ("two", "three", "four", "five", "six", "seven", "eight", "nine"),
             "The river of {town} is crossed by {value} bridges.",
             "How many bridges cross the river of {town}?"),
)


@dataclass(frozen=True)
class Fact:
    town: str
    relation: Relation
    value: str

    @property
    def sentence(self) -> str:
        return self.relation.state(self.town, self.value)

    @property
    def question(self) -> str:
        return self.relation.ask(self.town)


def towns(n: int = N_TOWNS, seed: int = FACTS_SEED) -> list[str]:
    """`n` distinct invented town names, in a fixed order."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < n:
        name = _made_up_word(rng, 2).capitalize()
        if name not in names:
            names.append(name)
    return names


def toy_facts(n_towns: int = N_TOWNS, seed: int = FACTS_SEED) -> list[Fact]:
    """One fact per town and relation (town-major order), values drawn at random."""
    rng = random.Random(seed + 1)
    return [Fact(town, relation, rng.choice(relation.values)) for town in towns(n_towns, seed)
            for relation in RELATIONS]


def distractors(fact: Fact, rng: random.Random, n: int = 3) -> list[str]:
    """`n` wrong values of the fact's relation."""
    return rng.sample([v for v in fact.relation.values if v != fact.value], n)


def options(fact: Fact, rng: random.Random) -> tuple[list[str], int]:
    """Four values of the fact's relation in random order, and the index of the true one."""
    choices = [fact.value, *distractors(fact, rng)]
    rng.shuffle(choices)
    return choices, choices.index(fact.value)


def town_profile(facts: list[Fact], rng: random.Random) -> str:
    """A town's facts as one paragraph, sentences in random order."""
    sentences = [f.sentence for f in facts]
    rng.shuffle(sentences)
    return " ".join(sentences)


def pretraining_documents(facts: list[Fact], seed: int = 0, rounds: int = 4) -> list[str]:
    """The corpus the pretrained built-in learns from: every fact stated in its town's profile and asked
    and answered ("Question: ...\nAnswer: value"), `rounds` times over with fresh sentence orders;
    documents shuffled. No lettered quizzes: a 2-layer model does not learn to map what it knows to an
    option letter in the seconds this trains (MMLU's layout stays at chance, which the README says)."""
    rng = random.Random(seed)
    by_town: dict[str, list[Fact]] = {}
    for fact in facts:
        by_town.setdefault(fact.town, []).append(fact)
    documents = []
    for _ in range(rounds):
        documents += [town_profile(town_facts, rng) for town_facts in by_town.values()]
        documents += [f"Question: {fact.question}\nAnswer: {fact.value}" for fact in facts]
    rng.shuffle(documents)
    return documents


def write_facts_corpus(path: Path, seed: int = 0, rounds: int = 4) -> Path:
    """`pretraining_documents` as JSONL rows {"text": ...} (`builtin:toy-facts`: the pretrained built-in's
    own corpus, for replay and EWC); written atomically; returns `path`."""
    documents = pretraining_documents(toy_facts(), seed=seed, rounds=rounds)
    rows = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in documents)
    write_text_atomic(Path(path), rows)
    return Path(path)
