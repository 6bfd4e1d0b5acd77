"""Re-run cost: `atax run quickstart` from scratch vs the same file again (everything cached) vs a
run after changing only DTM's merge operator. Prints the three times, the ratios, and how many
train jobs each run executed. Targets: the full re-run <= 2 % of the first; the merge-only
change retrains nothing.

    python bench/rerun.py [--experiment experiments/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def run(exp: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", str(exp), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def train_markers(results: Path) -> set[str]:
    return {p.name for p in (results / "jobs").glob("*.done.json")
            if json.loads(p.read_text())["job"].startswith("train")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=Path(__file__).parent.parent / "experiments" / "quickstart.yaml")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="atax-rerun-"))
    config = yaml.safe_load(args.experiment.read_text())
    config["results_dir"] = str(work / "results")
    exp = work / "exp.yaml"
    exp.write_text(yaml.safe_dump(config))
    results = work / "results"

    first = run(exp)
    trained_first = train_markers(results)
    second = run(exp)
    trained_second = train_markers(results) - trained_first
    for method in config["methods"]:
        if isinstance(method, dict) and method["name"] == "dtm":
            method.setdefault("options", {})["merge"] = {"name": "ties", "params": {"density": 0.5}}
    exp.write_text(yaml.safe_dump(config))
    before = train_markers(results)
    third = run(exp)
    trained_third = train_markers(results) - before

    print(f"from scratch:            {first:8.1f} s  ({len(trained_first)} train jobs)")
    print(f"same file again:         {second:8.1f} s  ({len(trained_second)} train jobs)  "
          f"= {100 * second / first:.1f} % of the first")
    print(f"DTM merge changed only:  {third:8.1f} s  ({len(trained_third)} train jobs)  "
          f"= {100 * third / first:.1f} % of the first")
    print(f"(work dir {work})")


if __name__ == "__main__":
    main()
