"""Where the quick start's time goes: job seconds per kind (plan, train, combine, eval, report) and wall
time, for this checkout and, side by side in the same run, an older revision (`--before REV`, checked out
into a temporary git worktree and run with the same interpreter). Each run starts from an empty results
directory; the pretrained tiny base is built once into the cache first, so neither side pays for it.

Last measured (`--before 4800e2f`, one run, 2 idle cores, base cached): before the zygote's fast exit,
the compiled-once lm-eval templates and the short judge poll 225 s wall (job seconds: eval 154.8, train
37.4, report 12.0, plan 8.0, combine 7.2); this checkout 101 s (eval 58.5, train 19.6, report 9.6, plan
6.8, combine 1.2): 45% of the wall time. An earlier pair of separate runs gave 197 s and 97 s, with
identical scores in both stores.

    python bench/quickstart_breakdown.py [--before 4800e2f] [--experiment experiments/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^done\s+(\w+)\s+.*\((?:(\d+)m)?([\d.]+)s\)$")


def kind_seconds(run_log: Path) -> Counter[str]:
    """Seconds per job kind from the 'done' lines of a run.log ("(7.1s)" or "(1m05s)")."""
    seconds: Counter[str] = Counter()
    for line in run_log.read_text(encoding="utf-8").splitlines():
        match = LINE.match(line.strip())
        if match:
            seconds[match[1]] += 60 * int(match[2] or 0) + float(match[3])
    return seconds


def run_quickstart(checkout: Path, experiment: Path, results: Path) -> tuple[float, Counter[str]]:
    config = yaml.safe_load(experiment.read_text(encoding="utf-8"))
    config["results_dir"] = str(results)
    copy = results.parent / f"{results.name}.yaml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    began = time.perf_counter()
    # cwd = the checkout: `python -m harness` imports that checkout's code (its directory comes first).
    subprocess.run([sys.executable, "-m", "harness", "run", str(copy), "--quiet"], cwd=checkout, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - began, kind_seconds(results / "run.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="an older revision to run side by side (git worktree)")
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "quickstart.yaml")
    args = parser.parse_args()
    from harness.builtin import resolve_builtin

    resolve_builtin("builtin:tiny-llama-pretrained")  # built once into the cache: no side pays for it
    with tempfile.TemporaryDirectory(prefix="atax-bench-quickstart-") as tmp:
        sides = [("this checkout", ROOT)]
        if args.before:
            worktree = Path(tmp) / "before"
            added = subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before],
                                   cwd=ROOT, capture_output=True, text=True)
            if added.returncode != 0:
                why = added.stderr.strip().splitlines()[-1] if added.stderr.strip() else "git failed"
                sys.stderr.write(f"error: --before {args.before}: not a revision git can check out ({why})\n")
                sys.exit(2)
            sides.insert(0, (f"before ({args.before})", worktree))
        try:
            for number, (name, checkout) in enumerate(sides):
                results = Path(tmp) / f"results-{number}"
                wall, seconds = run_quickstart(checkout, args.experiment.resolve(), results)
                kinds = ", ".join(f"{kind} {seconds[kind]:.1f}" for kind in
                                  ("eval", "train", "report", "plan", "combine") if kind in seconds)
                total = sum(seconds.values())
                print(f"{name:<24} wall {wall:6.1f} s | job seconds: {kinds} (sum {total:.1f})")
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(Path(tmp) / "before")], cwd=ROOT,
                               capture_output=True)


if __name__ == "__main__":
    main()
