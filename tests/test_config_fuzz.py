"""Fuzz the experiment loader: hundreds of seeded mutations of `atax init`'s example (values, types,
keys, YAML structure). Each must load as a valid Experiment or fail with one UserError line that
names the file; any other exception is a bug. In process and cheap: each case loads a few KB.

The bounds of the loader (alias expansion, nesting depth, file size) are what keep every case
small; a backstop alarm turns a hang into a failure instead of a stuck CI job.
"""

from __future__ import annotations

import contextlib
import copy
import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.init import example_experiment_text
from harness.config import Experiment, load_experiment
from harness.errors import UserError

N_CASES = 240
BACKSTOP_S = 60  # only a hang ever meets it: a case parses a few KB

ODD_VALUES: list[Any] = [
    True, False, None, 0, 1, -1, 2, 3.5, -0.0, 1e20, 2**64, -(2**63) - 1, 10**30, float("inf"), float("-inf"),
    float("nan"), "", "x", "1e20", "true", "../../../../tmp/x", "/etc/passwd", "builtin:nothing", "a" * 300,
    "ü" * 5, "\x00", [], [1, 2], [None], {}, {"a": 1}, {"name": "dtm", "options": {"k": 10**9}},
]
ODD_LINES = [
    "[", "{", "]", "}", ":", "- -", "&a", "*a", "*undefined", "? [a, b]", "!!binary aGVsbG8=", "!!python/object:os.system",
    "\t", '"', "'", "%YAML 1.1", "---", "...", "<<: *a", "x: &a [*a]", "key: !!set {a, b}", "k: 2001-12-14",
    "a: " + "[" * 200 + "]" * 200, "seeds: [" + ", ".join(["0"] * 50) + "]", "\ufeff", "name: t\nname: u",
]


def scalar_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into the document, containers included."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from scalar_paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from scalar_paths(value, path + (index,))


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def mutate_value(doc: dict, rng: random.Random) -> str:
    path = rng.choice([p for p in scalar_paths(doc) if p])
    at(doc, path[:-1])[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def mutate_key(doc: dict, rng: random.Random) -> str:
    mappings = [p for p in scalar_paths(doc) if isinstance(at(doc, p), dict) and at(doc, p)]
    parent = at(doc, rng.choice(mappings))
    key = rng.choice(list(parent))
    action = rng.randrange(4)
    if action == 0:
        del parent[key]
    elif action == 1:
        parent[f"{key}_typo"] = parent.pop(key)
    elif action == 2:
        parent[rng.choice([1, "unknown", True, None, "options"])] = rng.choice(ODD_VALUES)
    else:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"value": parent[key]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    index = rng.randrange(len(lines))
    action = rng.randrange(6)
    if action == 0:
        del lines[index]
    elif action == 1:
        lines.insert(index, lines[rng.randrange(len(lines))])  # often a duplicate key
    elif action == 2:
        lines.insert(index, rng.choice(ODD_LINES))
    elif action == 3:
        lines[index] = " " * rng.choice([1, 2, 3, 5]) + lines[index]
    elif action == 4:
        position = rng.randrange(len(lines[index]) + 1)
        lines[index] = lines[index][:position] + rng.choice("[]{}:,&*!|>'\"#%@`\t-?") + lines[index][position:]
    else:
        return text[:rng.randrange(len(text))]
    return "\n".join(lines) + "\n"


def mutation(seed: int, example: str) -> str:
    rng = random.Random(seed)
    doc = yaml.safe_load(example)
    kinds: list[Callable[[], str]] = [lambda: mutate_value(doc, rng), lambda: mutate_key(doc, rng),
                                      lambda: mutate_text(example, rng)]
    text = rng.choice(kinds)()
    for _ in range(rng.randrange(3)):  # sometimes stack a second or third text mutation
        text = mutate_text(text, rng)
    return text


@contextlib.contextmanager
def backstop(seconds: int) -> Iterator[None]:
    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the loader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_every_mutation_is_an_experiment_or_one_user_error_line(tmp_path: Path) -> None:
    example = example_experiment_text()
    outcomes = {"valid": 0, "user error": 0}
    distinct = set()
    for seed in range(N_CASES):
        text = mutation(seed, example)
        distinct.add(text)
        path = tmp_path / f"case{seed}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            with backstop(BACKSTOP_S):
                experiment = load_experiment(path)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(str(path)), (seed, message)
            outcomes["user error"] += 1
        except Exception as exc:  # a traceback for the user: the bug this test is here to find
            pytest.fail(f"mutation {seed} raised {type(exc).__name__}: {exc}\n--- the file ---\n{text}")
        else:
            assert isinstance(experiment, Experiment)
            outcomes["valid"] += 1
    # The mutations must exercise both sides, and be distinct cases rather than one repeated.
    assert len(distinct) >= 200
    assert outcomes["user error"] >= 100 and outcomes["valid"] >= 10, outcomes
