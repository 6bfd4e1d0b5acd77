"""Made-up benchmark items in each hub dataset's own schema, laid out for `data_dir`, so the
knowledge suite runs offline with no third-party text: `data_dir: builtin:toy-knowledge`.

Every question, passage and program is invented (seeded); the shapes (columns, types, answer
encodings) are the hub datasets'. `builtin:toy-knowledge` (`write_toy_knowledge`) asks its multiple-choice
benchmarks (MMLU, ARC, OpenBookQA, RACE, TruthfulQA) about the invented facts of
`harness.builtin.toy_facts`, which `builtin:tiny-llama-pretrained` learned, so a model that knows them
scores above chance; GSM8K, BBH, HumanEval and MBPP get small invented arithmetic and code items.
`write_fixture_data` is the smaller fixture tests use (a few items each, no facts).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.atomic import atomic_dir
from harness.builtin.toy_facts import FACTS_VERSION, Fact, options, toy_facts
from harness.paths import cache_dir
from suites.knowledge.benchmarks import BBH_TASKS, MMLU_SUBJECTS

TOY_DATA = "builtin:toy-knowledge"
_VERSION = "v2"  # bump when the generator changes, so stale caches are not reused
FACT_ITEMS = 48  # questions per fact benchmark (ARC, OpenBookQA, TruthfulQA, RACE); MMLU: one per subject


def toy_data_dir() -> Path:
    """The toy data directory, written on first use into the atax cache."""
    final = cache_dir() / "builtin" / f"toy-knowledge-{_VERSION}-facts{FACTS_VERSION}"
    if not final.is_dir():
        with atomic_dir(final.with_name(final.name + ".build")) as tmp:
            write_toy_knowledge(tmp)
        try:
            final.with_name(final.name + ".build").rename(final)
        except OSError:  # another process published it first: keep theirs
            pass
    return final


THINGS = ["apples", "stones", "coins", "shells", "books", "seeds"]
NAMES = ["Avel", "Brin", "Coro", "Dessa", "Elko", "Fenn"]


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def gsm8k_rows(n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i, 4 + 2 * i
        name, thing = NAMES[i % len(NAMES)], THINGS[i % len(THINGS)]
        rows.append({
            "question": f"{name} has {a} {thing} and finds {b} more. How many {thing} does {name} have now?",
            "answer": f"{name} starts with {a} {thing} and finds {b}, so {a} + {b} = <<{a}+{b}={a + b}>>{a + b}.\n"
                      f"#### {a + b}",
        })
    return rows


def humaneval_rows(n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        name = f"add_{i}"
        rows.append({
            "task_id": f"HumanEval/{i}",
            "prompt": f'def {name}(x: int) -> int:\n    """Return x plus {i}.\n    >>> {name}(1)\n    {1 + i}\n    """\n',
            "canonical_solution": f"    return x + {i}\n",
            "test": f"\n\nMETADATA = {{}}\n\n\ndef check(candidate):\n    assert candidate(1) == {1 + i}\n"
                    f"    assert candidate(-{i}) == 0\n",
            "entry_point": name,
        })
    return rows


def mbpp_rows(n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        name = f"times_{i}"
        rows.append({
            "task_id": 11 + i,
            "text": f"Write a function to multiply a number by {i + 2}.",
            "code": f"def {name}(x):\r\n  return x * {i + 2}",
            "test_list": [f"assert {name}(1) == {i + 2}", f"assert {name}(0) == 0", f"assert {name}(3) == {3 * (i + 2)}"],
            "test_setup_code": "",
            "challenge_test_list": [],
        })
    return rows


def _choices(rng: random.Random, correct: str, wrong: list[str]) -> tuple[list[str], int]:
    options = [correct, *wrong]
    rng.shuffle(options)
    return options, options.index(correct)


def _write_math_and_code(root: Path) -> None:
    _write(root / "gsm8k" / "test.jsonl", gsm8k_rows())
    for task in BBH_TASKS:
        _write(root / "bbh" / task / "test.jsonl",
               [{"input": f"Is {i} smaller than {i + 1} in the {task.replace('_', ' ')} sense?", "target": "True"}
                for i in range(2)])
    _write(root / "humaneval" / "test.jsonl", humaneval_rows())
    _write(root / "mbpp" / "test.jsonl", mbpp_rows())


def write_fixture_data(root: Path, seed: int = 0) -> Path:
    """Write every dataset of the knowledge suite under `root` (a few items each); return `root`."""
    rng = random.Random(seed)
    _write_math_and_code(root)
    for subject in MMLU_SUBJECTS:
        for split, n in (("dev", 5), ("test", 2)):
            rows = []
            for i in range(n):
                a = rng.randint(2, 9)
                options, answer = _choices(rng, str(a * 2), [str(a * 2 + d) for d in (1, 2, 3)])
                rows.append({"question": f"In {subject.replace('_', ' ')}, what is {a} doubled? ({split} {i})",
                             "subject": subject, "choices": options, "answer": answer})
            _write(root / "mmlu" / subject / f"{split}.jsonl", rows)
    arc, obqa, tqa = [], [], []
    for i in range(3):
        name = NAMES[i]
        options, answer = _choices(rng, "the sun", ["the moon", "a river", "a stone"])
        labels = ["A", "B", "C", "D"]
        arc.append({"id": f"Fixture_{i}", "question": f"What warms the fields of {name}'s farm?",
                    "choices": {"text": options, "label": labels}, "answerKey": labels[answer]})
        obqa.append({"id": f"{i}-fixture", "question_stem": f"{name} plants a seed; it grows best with",
                     "choices": {"text": options, "label": labels}, "answerKey": labels[answer]})
        tqa.append({"question": f"What happens if {name} counts the {THINGS[i]} twice?",
                    "mc1_targets": {"choices": ["The count stays the same.", "The count doubles.", "Nothing."],
                                    "labels": [1, 0, 0]},
                    "mc2_targets": {"choices": ["The count stays the same.", "It is the same number.", "It doubles."],
                                    "labels": [1, 1, 0]}})
    _write(root / "arc_challenge" / "test.jsonl", arc)
    _write(root / "openbookqa" / "test.jsonl", obqa)
    _write(root / "truthfulqa" / "validation.jsonl", tqa)
    race = []
    for i in range(3):
        name = NAMES[i + 1]
        problems = [{"answer": "B", "options": ["red", "blue", "green", "white"],
                     "question": f"What colour is {name}'s door?"},
                    {"answer": "A", "options": ["two", "five", "nine", "ten"],
                     "question": f"How many {THINGS[i]} does {name} keep?"}]
        race.append({"article": f"{name} lives in a small house with a blue door and keeps two {THINGS[i]}.",
                     "problems": repr(problems), "example_id": f"fixture{i}.txt"})
    _write(root / "race" / "test.jsonl", race)
    return root


# ---- builtin:toy-knowledge: questions about the invented facts ----------------------------------


def _lettered(fact: Fact, rng: random.Random) -> tuple[list[str], str]:
    choices, answer = options(fact, rng)
    return choices, "ABCD"[answer]


def _mmlu_rows(subject: str, facts: list[Fact], rng: random.Random) -> list[dict]:
    rows = []
    for fact in facts:
        choices, answer = options(fact, rng)
        rows.append({"question": fact.question, "subject": subject, "choices": choices, "answer": answer})
    return rows


def _arc_row(n: int, fact: Fact, rng: random.Random) -> dict:
    choices, letter = _lettered(fact, rng)
    return {"id": f"Toy_{n}", "question": fact.question, "choices": {"text": choices, "label": list("ABCD")},
            "answerKey": letter}


def _obqa_row(n: int, fact: Fact, rng: random.Random) -> dict:
    # OpenBookQA's stems are sentence beginnings the answer completes: the fact's sentence up to its value.
    choices, letter = _lettered(fact, rng)
    return {"id": f"{n}-toy", "question_stem": fact.relation.stem(fact.town),
            "choices": {"text": choices, "label": list("ABCD")}, "answerKey": letter}


def _truthfulqa_row(fact: Fact, rng: random.Random) -> dict:
    # lm-eval scores MC1 with the true answer first; the answers are whole sentences, as in TruthfulQA.
    wrong = [fact.relation.state(fact.town, v) for v in rng.sample([v for v in fact.relation.values
                                                                    if v != fact.value], 3)]
    choices = [fact.sentence, *wrong]
    return {"question": fact.question, "mc1_targets": {"choices": choices, "labels": [1, 0, 0, 0]},
            "mc2_targets": {"choices": choices, "labels": [1, 0, 0, 0]}}


def _race_row(n: int, town_facts: list[Fact], rng: random.Random) -> dict:
    """An article stating a town's facts; lm-eval shows the first problem answered and scores the last,
    a sentence to complete (RACE's `_`-free cloze form)."""
    sentences = [f.sentence for f in town_facts]
    rng.shuffle(sentences)
    shown, asked = rng.sample(town_facts, 2)
    problems = []
    for fact, question in ((shown, shown.question), (asked, asked.relation.stem(asked.town))):
        choices, letter = _lettered(fact, rng)
        problems.append({"answer": letter, "options": choices, "question": question})
    return {"article": " ".join(sentences), "problems": repr(problems), "example_id": f"toy{n}.txt"}


def write_toy_knowledge(root: Path, seed: int = 0) -> Path:
    """Write `builtin:toy-knowledge` under `root` (see the module docstring); return `root`."""
    rng = random.Random(seed)
    facts = toy_facts()
    pool = facts[:]
    rng.shuffle(pool)
    arc, obqa, tqa = (pool[i * FACT_ITEMS:(i + 1) * FACT_ITEMS] for i in range(3))
    mmlu_test = pool[3 * FACT_ITEMS:3 * FACT_ITEMS + len(MMLU_SUBJECTS)]
    for n, subject in enumerate(MMLU_SUBJECTS):
        _write(root / "mmlu" / subject / "test.jsonl", _mmlu_rows(subject, mmlu_test[n:n + 1], rng))
        _write(root / "mmlu" / subject / "dev.jsonl", _mmlu_rows(subject, rng.sample(facts, 5), rng))
    _write(root / "arc_challenge" / "test.jsonl", [_arc_row(n, f, rng) for n, f in enumerate(arc)])
    _write(root / "openbookqa" / "test.jsonl", [_obqa_row(n, f, rng) for n, f in enumerate(obqa)])
    _write(root / "truthfulqa" / "validation.jsonl", [_truthfulqa_row(f, rng) for f in tqa])
    by_town: dict[str, list[Fact]] = {}
    for fact in facts:
        by_town.setdefault(fact.town, []).append(fact)
    race_towns = rng.sample(sorted(by_town), FACT_ITEMS)
    _write(root / "race" / "test.jsonl", [_race_row(n, by_town[t], rng) for n, t in enumerate(race_towns)])
    _write_math_and_code(root)
    return root
