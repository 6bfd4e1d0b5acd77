"""The `--data-dir` layout: find each benchmark's local files and check them against the hub schema.

    DIR/<dataset>/<split>.jsonl               gsm8k, arc_challenge, openbookqa, race, truthfulqa,
                                              humaneval, mbpp
    DIR/<dataset>/<subset>/<split>.jsonl      mmlu (one directory per subject), bbh (per task)

`.parquet` may stand in for `.jsonl`. Rows keep the hub dataset's own columns and types (see
`benchmarks.DATASETS`), so a copy written by `atax data pull` and one converted by hand read alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.jsonl import jsonl_objects
from suites.knowledge.benchmarks import DATASETS, Dataset
from suites.knowledge.official import completeness, count_items

SUFFIXES = (".jsonl", ".parquet")
_TYPE_NAMES = {str: "string", int: "integer", list: "list", dict: "object", float: "number"}
_MAX_PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class LocalFiles:
    """What lm-eval's `datasets.load_dataset` call gets instead of a hub id."""

    builder: str  # "json" or "parquet"
    files: dict[str, str]  # split -> absolute path


@dataclass(frozen=True)
class DataCheck:
    """Per dataset, the subsets found complete (`()` for datasets without subsets), every problem, and
    per dataset and split how the copy compares with the official release (`official.completeness`)."""

    present: dict[str, tuple[str, ...]]
    problems: list[str]
    completeness: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def partial(self) -> list[str]:
        """'dataset split: partial (n of N ...)' for every split that is not the complete release."""
        return [f"{name} {split}: {record['text']}" for name, splits in self.completeness.items()
                for split, record in splits.items() if record["status"] != "complete"]

    def summary(self, data_dir: Path) -> str:
        shown = "; ".join(self.problems[:_MAX_PROBLEMS_SHOWN])
        more = f" (and {len(self.problems) - _MAX_PROBLEMS_SHOWN} more; run `atax data check {data_dir}`)" \
            if len(self.problems) > _MAX_PROBLEMS_SHOWN else ""
        return f"{shown}{more}"


def check_data_dir(data_dir: Path, datasets: Iterable[str], allow_partial: bool = False) -> DataCheck:
    """Check that every file of `datasets` exists and every row has the hub columns with their types.

    With `allow_partial`, a dataset with subsets may lack some (not all) of them; the ones present
    are reported in `present`.
    """
    data_dir = Path(data_dir)
    problems: list[str] = []
    present: dict[str, tuple[str, ...]] = {}
    if not data_dir.is_dir():
        return DataCheck({}, [f"data dir {data_dir} not found; give a directory laid out as in README "
                              "'Knowledge suite data' (atax data pull writes one)"])
    counts: dict[str, dict[str, int]] = {}
    for name in datasets:
        dataset = DATASETS[name]
        counts[name] = dict.fromkeys(dataset.splits, 0)
        if not dataset.subsets:
            found = _check_files(dataset, data_dir / name, problems, counts[name])
            if found:
                present[name] = ()
            continue
        complete, missing = [], []
        for subset in dataset.subsets:
            subset_dir = data_dir / name / subset
            if not subset_dir.is_dir():
                missing.append(subset)
            elif _check_files(dataset, subset_dir, problems, counts[name]):
                complete.append(subset)
        if missing and (not allow_partial or len(missing) == len(dataset.subsets)):
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            problems.append(f"{data_dir / name}: {len(missing)} of {len(dataset.subsets)} {name} subsets missing "
                            f"({shown}); each needs its own directory")
        if complete:
            present[name] = tuple(complete)
    records = {name: {split: completeness(name, split, n, present[name] if DATASETS[name].subsets else None)
                      for split, n in counts[name].items()}
               for name in present}
    return DataCheck(present, problems, records)


def local_files(dataset: Dataset, data_dir: Path, subset: str | None = None) -> LocalFiles:
    """The files of one (checked) dataset or subset."""
    directory = Path(data_dir).resolve() / dataset.name / (subset or "")
    files = {split: _find(directory, split) for split in dataset.splits}
    builders = {Path(path).suffix for path in files.values() if path}
    builder = "parquet" if builders == {".parquet"} else "json"
    if len(builders) > 1:
        # datasets reads one format per call; mixed copies are converted by `atax data pull` anyway.
        raise ValueError(f"{directory}: mixes .jsonl and .parquet splits")
    return LocalFiles(builder, {split: str(path) for split, path in files.items() if path})


def split_path(data_dir: Path, dataset: Dataset, split: str, subset: str | None = None) -> Path:
    """Where `atax data pull` writes a split."""
    return Path(data_dir) / dataset.name / (subset or "") / f"{split}.jsonl"


def _find(directory: Path, split: str) -> Path | None:
    for suffix in SUFFIXES:
        path = directory / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def _check_files(dataset: Dataset, directory: Path, problems: list[str], counts: dict[str, int]) -> bool:
    """Check each split's file; add its item count to `counts[split]`."""
    ok = True
    for split in dataset.splits:
        path = _find(directory, split)
        if path is None:
            problems.append(f"{directory / (split + '.jsonl')}: missing (the {dataset.hub} '{split}' split)")
            ok = False
            continue
        problem, n = _check_parquet(path, dataset) if path.suffix == ".parquet" else _check_jsonl(path, dataset)
        counts[split] += n
        if problem:
            problems.append(problem)
            ok = False
    return ok


def _check_jsonl(path: Path, dataset: Dataset) -> tuple[str | None, int]:
    """(the first problem or None, the number of items)."""
    rows, items = 0, 0
    try:
        for line_no, row in jsonl_objects(path, f"a JSON object with columns {', '.join(dataset.columns)}"):
            for column, kind in dataset.columns.items():
                if column not in row:
                    return (f"{path}:{line_no}: missing column '{column}' ({dataset.hub} schema: "
                            f"{', '.join(dataset.columns)})"), items
                value = row[column]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    return (f"{path}:{line_no}: column '{column}' should be a {_TYPE_NAMES[kind]}, "
                            f"got {type(value).__name__}"), items
            variant = _wrong_variant(dataset, row)
            if variant:
                return f"{path}:{line_no}: {variant}", items
            items += count_items(dataset.name, [row])
            rows += 1
    except (ValueError, SyntaxError):
        return f"{path}:{line_no}: column 'problems' is not a Python-literal list (EleutherAI/race's form)", items
    except UserError as exc:  # a check reports problems instead of stopping at the first file
        return str(exc), items
    return (None if rows else f"{path}: no rows"), items


def _wrong_variant(dataset: Dataset, row: dict[str, Any]) -> str | None:
    """RACE's levels are two benchmarks: a middle-school article under race/ (RACE-high) is the wrong data."""
    example = str(row.get("example_id", ""))
    wanted = {"race": "high", "race_middle": "middle"}.get(dataset.name)
    other = {"high": "middle", "middle": "high"}.get(wanted or "")
    if wanted and other and example.startswith(other):
        home = "race_middle" if other == "middle" else "race"
        return (f"a RACE-{other} article ({example}) in {dataset.name}/, which holds RACE-{wanted}; it belongs "
                f"under {home}/ (`atax data convert {home} FILE` writes it there)")
    return None


def _check_parquet(path: Path, dataset: Dataset) -> tuple[str | None, int]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return f"{path}: not a readable parquet file ({exc})", 0
    missing = [column for column in dataset.columns if column not in schema.names]
    if missing:
        return f"{path}: missing column '{missing[0]}' ({dataset.hub} schema: {', '.join(dataset.columns)})", 0
    if dataset.name.startswith("race"):
        return None, count_items(dataset.name, pq.read_table(path, columns=["problems"]).to_pylist())
    return None, pq.read_metadata(path).num_rows
