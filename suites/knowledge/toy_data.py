"""Made-up benchmark items in each hub dataset's own schema, laid out for `data_dir`, so the
knowledge suite runs offline with no third-party text: `data_dir: builtin:toy-knowledge`.

Every question, passage and program is invented (seeded); the shapes (columns, types, answer
encodings) are the hub datasets'. Scores on it mean nothing; it exists to exercise the plumbing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.atomic import atomic_dir
from harness.paths import cache_dir
from suites.knowledge.benchmarks import BBH_TASKS, MMLU_SUBJECTS

TOY_DATA = "builtin:toy-knowledge"
_VERSION = "v1"  # bump when the generator changes, so stale caches are not reused


def toy_data_dir() -> Path:
    """The toy data directory, written on first use into the atax cache."""
    final = cache_dir() / "builtin" / f"toy-knowledge-{_VERSION}"
    if not final.is_dir():
        with atomic_dir(final.with_name(final.name + ".build")) as tmp:
            write_fixture_data(tmp)
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


def write_fixture_data(root: Path, seed: int = 0) -> Path:
    """Write every dataset of the knowledge suite under `root` (a few items each); return `root`."""
    rng = random.Random(seed)
    _write(root / "gsm8k" / "test.jsonl", gsm8k_rows())
    for subject in MMLU_SUBJECTS:
        for split, n in (("dev", 5), ("test", 2)):
            rows = []
            for i in range(n):
                a = rng.randint(2, 9)
                options, answer = _choices(rng, str(a * 2), [str(a * 2 + d) for d in (1, 2, 3)])
                rows.append({"question": f"In {subject.replace('_', ' ')}, what is {a} doubled? ({split} {i})",
                             "subject": subject, "choices": options, "answer": answer})
            _write(root / "mmlu" / subject / f"{split}.jsonl", rows)
    for task in BBH_TASKS:
        _write(root / "bbh" / task / "test.jsonl",
               [{"input": f"Is {i} smaller than {i + 1} in the {task.replace('_', ' ')} sense?", "target": "True"}
                for i in range(2)])
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
    _write(root / "humaneval" / "test.jsonl", humaneval_rows())
    _write(root / "mbpp" / "test.jsonl", mbpp_rows())
    return root
