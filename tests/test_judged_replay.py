"""FastChat-exact MT-bench on real published files: granite-7b-lab's recorded answers (FastChat's
model_answer format, given as they are) judged through `atax eval --backend answers` by a replay judge
(a real HTTP server on loopback that answers each prompt with the GPT-4 judgment FastChat recorded for
that very prompt). With `rating=fastchat` every per-question score and FastChat's show_result
aggregates for both turns come out exactly; the default rating reads the judge's final verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_atax
from judged_fixtures import ScriptedJudge

from harness.store import ResultsStore

pytestmark = pytest.mark.realdata
JUDGMENTS = "mtbench/mt_bench/model_judgment/gpt-4_single.granite-7b-lab.jsonl"
ANSWERS = "mtbench/mt_bench/model_answer/granite-7b-lab.jsonl"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fastchat_show_result(rows: list[dict[str, Any]]) -> dict[str, float]:
    """FastChat's `display_result_single`, as written there: drop score -1 rows, then mean per turn and overall."""
    import pandas as pd

    df = pd.DataFrame(rows)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    return {"score": float(df[df["turn"] == 1].groupby(["model", "turn"]).mean()["score"].iloc[0]),
            "score_turn2": float(df[df["turn"] == 2].groupby(["model", "turn"]).mean()["score"].iloc[0]),
            "score_both_turns": float(df[["model", "score"]].groupby(["model"]).mean()["score"].iloc[0])}


def _replay_judge(recorded: dict[str, str]) -> ScriptedJudge:
    def reply(messages: list[dict[str, str]]) -> tuple[int, str]:
        judgment = recorded.get(messages[-1]["content"])
        return (200, judgment) if judgment is not None else (400, "no judgment recorded for this prompt")
    return ScriptedJudge(reply, model="gpt-4")


def _judge_granite(data: Path, judge: ScriptedJudge, results: Path, *options: str) -> Any:
    base = data / "mtbench"
    return run_atax("eval", "--suite", "mt_bench", "--backend", "answers", "--answers", str(data / ANSWERS),
                    "--questions", str(base / "mt_bench/question.jsonl"), "--judge-prompts",
                    str(base / "judge_prompts.jsonl"), "--judge-url", judge.url, "--judge-model", "gpt-4",
                    "-o", "second_turn=true", *options, "--results", str(results), "--json", "--quiet", timeout=300)


@pytest.mark.slow
def test_recorded_answers_rejudged_reproduce_fastchat_exactly(shared_data: Path, tmp_path: Path) -> None:
    rows = _rows(shared_data / JUDGMENTS)
    with _replay_judge({row["user_prompt"]: row["judgment"] for row in rows}) as judge:
        proc = _judge_granite(shared_data, judge, tmp_path / "res", "-o", "rating=fastchat")
        assert proc.returncode == 0, proc.stderr
        assert judge.requests == 160  # every prompt matched a recorded one: rebuilt byte for byte
        summary = json.loads(proc.stdout)["mt_bench"]
        expected = fastchat_show_result(rows)
        assert {k: summary[k] for k in expected} == expected
        assert round(expected["score"], 2) == 7.62
        with ResultsStore.open(tmp_path / "res") as store:
            items = {i.item_id: i for i in store.items(checkpoint=store.scores(suite="mt_bench")[0].checkpoint,
                                                          benchmark="mt_bench")}
            meta = store.scores(suite="mt_bench", metric="score")[0].run_meta
        assert meta["rating"] == "fastchat" and meta["answers"]["recorded"] is True
        assert meta["data"]["completeness"]["text"] == "complete (80 questions)"
        for row in rows:
            item = items[f"{row['question_id']}/turn{row['turn']}"]
            assert item.score == (None if row["score"] == -1 else float(row["score"])), item.item_id
        answers = {str(r["question_id"]): r["choices"][0]["turns"] for r in _rows(shared_data / ANSWERS)}
        assert all(i.prediction == answers[i.item_id.split("/")[0]][int(i.item_id[-1]) - 1] for i in items.values())

        # The same judgments (cached: nothing sent again) read as the judge's final verdict: the two
        # FastChat zeros (`[0]` caught in quoted code) are missing, everything else agrees.
        again = _judge_granite(shared_data, judge, tmp_path / "res")
        assert again.returncode == 0, again.stderr
        assert judge.requests == 160
    final = json.loads(again.stdout)["mt_bench"]
    on_scale = [r for r in rows if 1 <= r["score"] <= 10]
    turn1 = [r["score"] for r in on_scale if r["turn"] == 1]
    assert final["score"] == sum(turn1) / len(turn1) and round(final["score"], 2) == 7.83
    assert final["n_missing"] == summary["n_missing"] + 1 and final["n_missing_turn2"] == summary["n_missing_turn2"] + 1
