"""How many items each benchmark's official release has, so every copy that is checked or scored
says whether it is `complete` or `partial (n of N)` (or not the official release at all).

Counts are of scored items in the hub schema: rows, except RACE (questions: its rows are articles
holding several) and the groups (MMLU subjects, BBH tasks), which add up per subset.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_BBH_SHORT = {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}  # every other task: 250
MMLU_TEST: dict[str, int] = {
    "abstract_algebra": 100, "anatomy": 135, "astronomy": 152, "business_ethics": 100, "clinical_knowledge": 265,
    "college_biology": 144, "college_chemistry": 100, "college_computer_science": 100, "college_mathematics": 100,
    "college_medicine": 173, "college_physics": 102, "computer_security": 100, "conceptual_physics": 235,
    "econometrics": 114, "electrical_engineering": 145, "elementary_mathematics": 378, "formal_logic": 126,
    "global_facts": 100, "high_school_biology": 310, "high_school_chemistry": 203,
    "high_school_computer_science": 100, "high_school_european_history": 165, "high_school_geography": 198,
    "high_school_government_and_politics": 193, "high_school_macroeconomics": 390, "high_school_mathematics": 270,
    "high_school_microeconomics": 238, "high_school_physics": 151, "high_school_psychology": 545,
    "high_school_statistics": 216, "high_school_us_history": 204, "high_school_world_history": 237,
    "human_aging": 223, "human_sexuality": 131, "international_law": 121, "jurisprudence": 108,
    "logical_fallacies": 163, "machine_learning": 112, "management": 103, "marketing": 234, "medical_genetics": 100,
    "miscellaneous": 783, "moral_disputes": 346, "moral_scenarios": 895, "nutrition": 306, "philosophy": 311,
    "prehistory": 324, "professional_accounting": 282, "professional_law": 1534, "professional_medicine": 272,
    "professional_psychology": 612, "public_relations": 110, "security_studies": 245, "sociology": 201,
    "us_foreign_policy": 100, "virology": 166, "world_religions": 171,
}


def _bbh(task: str) -> int:
    return _BBH_SHORT.get(task, 250)


@dataclass(frozen=True)
class Official:
    """The official size of one dataset split: in total, and per subset for groups."""

    total: int
    unit: str = "questions"
    per_subset: dict[str, int] | None = None


def _official() -> dict[tuple[str, str], Official]:
    from suites.knowledge.benchmarks import BBH_TASKS, MMLU_SUBJECTS

    bbh = {t: _bbh(t) for t in BBH_TASKS}
    return {
        ("gsm8k", "test"): Official(1319),
        ("mmlu", "test"): Official(14042, per_subset=MMLU_TEST),
        ("mmlu", "dev"): Official(285, "few-shot examples", dict.fromkeys(MMLU_SUBJECTS, 5)),
        ("bbh", "test"): Official(sum(bbh.values()), per_subset=bbh),
        ("arc_challenge", "test"): Official(1172),
        ("arc_challenge", "validation"): Official(299),
        ("openbookqa", "test"): Official(500),
        ("race", "test"): Official(3498),  # RACE-high
        ("race_middle", "test"): Official(1436),
        ("truthfulqa", "validation"): Official(817),
        ("humaneval", "test"): Official(164, "problems"),
        ("mbpp", "test"): Official(500, "problems"),
    }


def official(dataset: str, split: str) -> Official | None:
    return _official().get((dataset, split))


def count_items(dataset: str, rows: Iterable[dict[str, Any]]) -> int:
    """Scored items in hub-schema rows: RACE counts the questions of each article, others count rows."""
    if dataset.startswith("race"):
        return sum(len(ast.literal_eval(row["problems"])) if isinstance(row["problems"], str) else len(row["problems"])
                   for row in rows)
    return sum(1 for _ in rows)


def completeness(dataset: str, split: str, n: int, subsets: Iterable[str] | None = None) -> dict[str, Any]:
    """`{"status": "complete" | "partial" | "not official", "n", "of", "unit", "text"}` for a copy holding
    `n` items (over `subsets` for groups: the ones present); status "unknown" where no count is known."""
    known = official(dataset, split)
    if known is None:
        return {"status": "unknown", "n": n, "of": None, "unit": "rows", "text": f"{n} rows (no official count known)"}
    expected = known.total
    if subsets is not None and known.per_subset:
        present = list(subsets)
        within = sum(known.per_subset.get(s, 0) for s in present)
        if n > within:
            return _status("not official", n, expected, known.unit,
                           f"{n} {known.unit} in {len(present)} subsets where the release has {within}")
    if n == expected:
        return _status("complete", n, expected, known.unit, f"complete ({n} {known.unit})")
    if n < expected:
        return _status("partial", n, expected, known.unit, f"partial ({n} of {expected} {known.unit})")
    return _status("not official", n, expected, known.unit,
                   f"not the official release ({n} {known.unit}; the release has {expected})")


def _status(status: str, n: int, of: int, unit: str, text: str) -> dict[str, Any]:
    return {"status": status, "n": n, "of": of, "unit": unit, "text": text}
