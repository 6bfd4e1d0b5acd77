"""Convert the benchmarks' original release files into the hub schema of the `--data-dir` layout.

For machines that hold the authors' files rather than hub copies (`atax data convert DATASET SOURCE
--to DIR`). Each converter reads one release format and returns rows per split (per subset for
MMLU and BBH) in exactly the columns and encodings of the hub dataset lm-eval reads:

- gsm8k       grade-school-math `test.jsonl` (already the hub schema)
- mmlu        hendrycks `data/` directory: `{dev,test}/<subject>_<split>.csv`, no header, answer letter
- bbh         BIG-Bench-Hard `bbh/` directory of `<task>.json` ({"examples": [{input, target}]})
- arc_challenge  AI2 `ARC-Challenge-{Test,Dev,Train}.jsonl` (question.stem, question.choices[{text, label}]);
              the split comes from the release's file name (Dev -> validation), never guessed
- openbookqa  `Data/Main/test.tsv` (choices as "(A) x (B) y ...")
- race, race_middle  per-question JSON lines (example_id, article, question, options, answer), regrouped
              into EleutherAI/race's one row per article with `problems` as a Python-literal list; the
              level comes from the example ids (`high123.txt`, `middle45.txt`) and must match the dataset
- truthfulqa  `data/mc_task.json` (targets as {answer: 0/1} maps); `TruthfulQA.csv` (the generation
              task's file) is refused with a pointer to mc_task.json
- humaneval   `HumanEval.jsonl[.gz]` (already the hub schema)
- mbpp        `mbpp.jsonl` (all 974 tasks; the hub's test split is task_id 11-510); the sanitized release
              (`sanitized-mbpp.json`, another task set and prompt) is refused with a pointer to mbpp.jsonl
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.errors import UserError
from suites.knowledge.benchmarks import DATASETS
from suites.knowledge.layout import split_path

Rows = list[dict[str, Any]]
# (subset or None, split) -> rows
Converted = dict[tuple[str | None, str], Rows]

MBPP_TEST_IDS = range(11, 511)  # Austin et al.: tasks 11-510 are the test split
_LETTERS = "ABCDEFGHIJ"


def convert(dataset: str, source: Path, to_dir: Path) -> list[Path]:
    """Convert `source` (a file or directory in `dataset`'s release format) into `to_dir`'s layout."""
    if dataset not in CONVERTERS:
        raise UserError(f"unknown dataset '{dataset}'; convertible: {', '.join(CONVERTERS)}")
    source = Path(source)
    if not source.exists():
        raise UserError(f"{source}: not found; give the original {dataset} file or directory")
    refuse_other_release(dataset, source)
    try:
        converted = CONVERTERS[dataset](source)
    except (KeyError, IndexError, TypeError, ValueError, SyntaxError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: not in the original {dataset} format ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None
    if dataset in ("race", "race_middle"):
        check_race_level(dataset, source, converted)
    written = []
    for (subset, split), rows in sorted(converted.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        target = split_path(to_dir, DATASETS[dataset], split, subset)
        write_text_atomic(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        written.append(target)
    return written


def refuse_other_release(dataset: str, source: Path) -> None:
    """One line for the release files people give by mistake: the benchmark's other files or variants."""
    head = _head(source)
    if dataset == "mbpp" and head.lstrip().startswith("["):
        raise UserError(f"{source}: the sanitized MBPP release (a JSON list; 427 hand-checked tasks with other "
                        "prompts), not lm-eval's MBPP; give the full release's mbpp.jsonl (its test split, tasks "
                        "11-510, is what lm-eval scores)")
    if dataset == "truthfulqa" and (source.suffix.lower() == ".csv" or head.lstrip("\ufeff").startswith("Type,")):
        raise UserError(f"{source}: TruthfulQA.csv holds the generation task's answers, not the multiple-choice "
                        "targets; give data/mc_task.json from the same release")
    if dataset == "arc_challenge" and source.is_file() and "easy" in source.name.lower():
        raise UserError(f"{source}: an ARC-Easy file; arc_challenge needs ARC-Challenge-Test.jsonl")


def check_race_level(dataset: str, source: Path, converted: Converted) -> None:
    """RACE's middle- and high-school sets are two benchmarks: the ids say which one a file holds."""
    ids = [row.get("example_id", "") for rows in converted.values() for row in rows]
    levels = {level for level in ("middle", "high") for i in ids if str(i).startswith(level)}
    wanted = "middle" if dataset == "race_middle" else "high"
    if len(levels) > 1:
        raise UserError(f"{source}: mixes RACE-middle and RACE-high articles (example_id middle*/high*); "
                        "convert each level's file on its own, as race_middle and race")
    if levels and levels != {wanted}:
        found = levels.pop()
        raise UserError(f"{source}: RACE-{found} (example_id {found}*.txt), not RACE-{wanted}; convert it as "
                        f"{'race_middle' if found == 'middle' else 'race'} (race is lm-eval's RACE-high)")


def _head(source: Path) -> str:
    if not source.is_file():
        return ""
    with open(source, "rb") as handle:
        return handle.read(256).decode("utf-8", "replace")


def _jsonl(path: Path) -> Rows:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def gsm8k(source: Path) -> Converted:
    return {(None, "test"): [{"question": r["question"], "answer": r["answer"]} for r in _jsonl(source)]}


def mmlu(source: Path) -> Converted:
    out: Converted = {}
    for split in ("dev", "test"):
        for path in sorted((source / split).glob(f"*_{split}.csv")):
            subject = path.name[: -len(f"_{split}.csv")]
            with path.open(encoding="utf-8", newline="") as handle:
                out[(subject, split)] = [
                    {"question": q, "subject": subject, "choices": [a, b, c, d], "answer": _LETTERS.index(key.strip())}
                    for q, a, b, c, d, key in csv.reader(handle)]
    if not out:
        raise ValueError("no <subject>_dev.csv / <subject>_test.csv under dev/ and test/")
    return out


def bbh(source: Path) -> Converted:
    out: Converted = {}
    for path in sorted(source.glob("*.json")):
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
        out[(path.stem, "test")] = [{"input": e["input"], "target": e["target"]} for e in examples]
    if not out:
        raise ValueError("no <task>.json files")
    return out


_ARC_SPLITS = {"test": "test", "dev": "validation", "train": "train"}


def _arc_split(source: Path) -> str:
    name = source.name.lower()
    found = [split for word, split in _ARC_SPLITS.items() if f"-{word}" in name or f"_{word}" in name]
    if len(found) != 1:
        raise UserError(f"{source}: cannot tell which ARC-Challenge split this is from its name; keep the "
                        "release's file name (ARC-Challenge-Test.jsonl, -Dev.jsonl or -Train.jsonl)")
    return found[0]


def arc_challenge(source: Path) -> Converted:
    split = _arc_split(source)
    rows = []
    for r in _jsonl(source):
        choices = r["question"]["choices"]
        rows.append({"id": r["id"], "question": r["question"]["stem"],
                     "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
                     "answerKey": r["answerKey"]})
    return {(None, split): rows}


def openbookqa(source: Path) -> Converted:
    rows = []
    with source.open(encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle, delimiter="\t"):
            pairs = re.findall(r"\(([A-Z])\) (.*?)(?= \([A-Z]\) |$)", r["Choices"].strip())
            if not pairs:
                raise ValueError(f"cannot read the choices of {r['ID']}")
            rows.append({"id": r["ID"], "question_stem": r["Question Stem"],
                         "choices": {"text": [t for _, t in pairs], "label": [label for label, _ in pairs]},
                         "answerKey": r["Answer Key"].strip()})
    return {(None, "test"): rows}


def race(source: Path) -> Converted:
    articles: dict[str, dict[str, Any]] = {}
    for r in _jsonl(source):
        entry = articles.setdefault(r["example_id"], {"article": r["article"], "problems": [],
                                                       "example_id": r["example_id"]})
        entry["problems"].append({"answer": r["answer"], "options": list(r["options"]), "question": r["question"]})
    # EleutherAI/race stores the problems as the repr of a Python list, which lm-eval literal_evals.
    return {(None, "test"): [{**a, "problems": repr(a["problems"])} for a in articles.values()]}


def truthfulqa(source: Path) -> Converted:
    def targets(mapping: dict[str, int]) -> dict[str, list[Any]]:
        return {"choices": list(mapping), "labels": [int(v) for v in mapping.values()]}

    items = json.loads(source.read_text(encoding="utf-8"))
    return {(None, "validation"): [{"question": r["question"], "mc1_targets": targets(r["mc1_targets"]),
                                    "mc2_targets": targets(r["mc2_targets"])} for r in items]}


def humaneval(source: Path) -> Converted:
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return {(None, "test"): [{k: r[k] for k in keys} for r in _jsonl(source)]}


def mbpp(source: Path) -> Converted:
    keys = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
    return {(None, "test"): [{k: r[k] for k in keys} for r in _jsonl(source) if r["task_id"] in MBPP_TEST_IDS]}


CONVERTERS: dict[str, Callable[[Path], Converted]] = {
    "gsm8k": gsm8k, "mmlu": mmlu, "bbh": bbh, "arc_challenge": arc_challenge, "openbookqa": openbookqa,
    "race": race, "race_middle": race, "truthfulqa": truthfulqa, "humaneval": humaneval, "mbpp": mbpp,
}
