"""Judging answers recorded elsewhere (`--backend answers` on a judged suite), the two rating modes on
hostile judgments, and the judge client's total deadline and reply cap, against real HTTP on loopback.

Answers are keyed by question id and turn (FastChat's model_answer lines, or {question_id, turn,
completion}); a missing or extra question, or a file of knowledge completions, is a one-line error
and nothing is judged or stored."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_atax
from judged_fixtures import QUESTIONS, REFERENCES, ScriptedJudge, marker_of, write_bench

from harness.errors import UserError
from harness.evaluate.runner import EvalRequest, run_eval
from harness.store import ResultsStore
from suites.judged.judge_client import JudgeClient, JudgeConfig
from suites.judged.parsing import parse_rating

MESSAGES = [{"role": "user", "content": "rate this"}]


def _fastchat_answers(path: Path, questions: list[dict[str, Any]]) -> Path:
    """FastChat's model_answer lines; answers keep leading spaces and a trailing newline (never stripped)."""
    rows = [{"question_id": q["question_id"], "answer_id": f"a{q['question_id']}", "model_id": "m",
             "choices": [{"index": 0, "turns": [f"  answer {q['question_id']}.{t}\n" for t in (1, 2)]}], "tstamp": 0.0}
            for q in questions]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rating_by_marker(messages: list[dict[str, str]]) -> tuple[int, str]:
    marker = marker_of(messages) or "q0"
    turn2 = "Assistant A's Conversation" in messages[-1]["content"] or "### User:" in messages[-1]["content"]
    return 200, f"Fine.\n\nRating: [[{int(marker[1:]) + (2 if turn2 else 0)}]]"


def _evaluate(questions: Path, answers: Path, judge: ScriptedJudge, results: Path, **options: Any) -> Any:
    suite_options = {"questions": str(questions), "judge_url": judge.url, "judge_model": judge.model,
                     "backoff_s": 0.01, **options}
    return run_eval(EvalRequest(None, "mt_bench", suite_options, "answers", {"answers": answers}, results)).results[0]


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "mt_bench", QUESTIONS, REFERENCES)


def test_fastchat_answers_are_judged_per_question_and_turn_byte_for_byte(bench: Path, tmp_path: Path) -> None:
    answers = _fastchat_answers(tmp_path / "granite.jsonl", QUESTIONS[::-1])  # order does not matter
    with ScriptedJudge(_rating_by_marker) as judge:
        result = _evaluate(bench, answers, judge, tmp_path / "res", second_turn=True)
        asked = list(judge.answered)
    items = {i.item_id: i for i in result.items}
    assert len(items) == 12
    for q in QUESTIONS:
        qid = q["question_id"]
        # Each answer reached the judge inside its own question's prompt, unstripped.
        assert items[f"{qid}/turn1"].prediction == f"  answer {qid}.1\n"
        assert items[f"{qid}/turn1"].score == float(qid) and items[f"{qid}/turn2"].score == float(qid + 2)
        prompt = next(m[-1]["content"] for m in asked if f"<<q{qid}>>" in m[-1]["content"]
                      and "answer_2" not in m[-1]["content"] and f"answer {qid}.2" not in m[-1]["content"])
        assert f"  answer {qid}.1\n" in prompt
    assert result.values()["score"] == sum(range(1, 7)) / 6 and result.values()["score_turn2"] == sum(range(3, 9)) / 6
    assert result.meta["answers"]["recorded"] is True and result.meta["rating"] == "final"
    assert result.meta["data"]["completeness"]["text"] == "partial (6 of 80 questions)"  # project-written toy set


def test_own_jsonl_per_turn_and_other_benchmarks_skipped(bench: Path, tmp_path: Path) -> None:
    rows = [{"question_id": q["question_id"], "turn": 1, "completion": f"A{q['question_id']}"} for q in QUESTIONS]
    rows.append({"benchmark": "vicuna_bench", "question_id": 99, "turn": 1, "completion": "other suite"})
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with ScriptedJudge(_rating_by_marker) as judge:
        result = _evaluate(bench, answers, judge, tmp_path / "res")
    assert {i.item_id: i.prediction for i in result.items} == {f"{q['question_id']}/turn1": f"A{q['question_id']}"
                                                               for q in QUESTIONS}


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question_id": q["question_id"], "turn": 1, "completion": "x"} for q in QUESTIONS[:5]],
     r"no answer to question_id 6 turn 1 \(1 of 6 answers missing\)"),
    ([{"question_id": q["question_id"], "turn": 1, "completion": "x"} for q in QUESTIONS]
     + [{"question_id": 81, "turn": 1, "completion": "x"}], r"answers question_id 81, which the questions do not have"),
    ([{"benchmark": "mt_bench", "doc_id": i, "completion": "x"} for i in range(6)],
     r"not an answer keyed by question_id \(a knowledge-benchmark completion"),
    ([{"question_id": 1, "turn": 1, "completion": "x"}, {"question_id": 1, "turn": 1, "completion": "y"}],
     r"second answer for question_id 1 turn 1"),
    ([{"question_id": 1, "choices": [{"turns": []}]}], r"\"choices\" must be FastChat's"),
])
def test_wrong_answers_files_are_one_line_errors_and_store_nothing(bench: Path, tmp_path: Path, rows: list[dict],
                                                                   message: str) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with ScriptedJudge(_rating_by_marker) as judge, pytest.raises(UserError, match=message) as caught:
        _evaluate(bench, answers, judge, tmp_path / "res")
    assert judge.requests == 0 and "\n" not in str(caught.value)
    assert not (tmp_path / "res" / "results.sqlite").exists() or not ResultsStore.open(tmp_path / "res").scores()


def test_second_turn_needs_second_answers(bench: Path, tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": q["question_id"], "turn": 1, "completion": "x"}) + "\n"
                               for q in QUESTIONS), encoding="utf-8")
    with ScriptedJudge(_rating_by_marker) as judge, pytest.raises(UserError, match="6 of 12 answers missing"):
        _evaluate(bench, answers, judge, tmp_path / "res", second_turn=True)


def test_fastchat_answers_fed_to_a_knowledge_benchmark_never_score(tmp_path: Path) -> None:
    answers = _fastchat_answers(tmp_path / "model_answer.jsonl", QUESTIONS)
    proc = run_atax("eval", "--backend", "answers", "--answers", str(answers), "--benchmarks", "gsm8k",
                    "--data-dir", "builtin:toy-knowledge", "--results", str(tmp_path / "res"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "an answer keyed by question_id" in last and "{benchmark, doc_id, completion}" in last
    assert not (tmp_path / "res" / "results.sqlite").exists() or not ResultsStore.open(tmp_path / "res").scores()


@pytest.mark.parametrize(("text", "final", "fastchat"), [
    ("Rating: [[8]]", 8.0, 8.0),
    # An answer quoting code with [[8]] before the judge's verdict: FastChat stores 8, the default 2.
    ("The answer returns `[[8]]` for the grid:\n```python\nprint([[8]])\n```\nIt is wrong.\nRating: [[2]]", 2.0, 8.0),
    ("The answer prints [[8]] where 3 was asked. I give it [[2]].", 2.0, 8.0),
    # A hypothetical mentioned first, then the verdict.
    ("A perfect answer would earn [[10]]. This one misses the point.\n\nRating: [[1]]", 1.0, 10.0),
    # Real GPT-4 phrasing: the rating, then what a revised answer would earn.
    ("Overall accurate, earning a rating of [[9]].\n\nThe revised response is better, earning a rating of [[10]].",
     9.0, 9.0),
    ("Rating: [[8]]\n\n[Explanation] ... would further enhance it, resulting in [[9]] or [[10]].", 8.0, 8.0),
    ("The code uses arr[0] as the pivot; it never rates.", None, 0.0),  # FastChat's `[x]` fallback quirk
    ("[The Start of Rating]\n\n[5]\n\n[The End of Rating]", 5.0, 5.0),
    ("Rating: [[11]]", None, 11.0),
    ("Rating: [[07]]", 7.0, None),  # FastChat's literal_eval cannot read it
    ("no rating", None, None),
])
def test_rating_modes(text: str, final: float | None, fastchat: float | None) -> None:
    assert parse_rating(text) == final
    assert parse_rating(text, "fastchat") == fastchat


class _Trickle:
    """A loopback server that sends an HTTP reply one byte every `pause_s` (headers included)."""

    def __init__(self, reply: bytes, pause_s: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.reply, self.pause_s, self.sent = reply, pause_s, 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.recv(65536)
        try:
            for byte in self.reply:
                conn.sendall(bytes([byte]))
                self.sent += 1
                time.sleep(self.pause_s)
        except OSError:
            pass  # the client gave up: what this test wants
        conn.close()


def test_a_trickling_judge_is_cut_off_at_the_total_deadline() -> None:
    body = json.dumps({"choices": [{"message": {"content": "Rating: [[5]]" + " " * 400}}]}).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    server = _Trickle(reply, pause_s=0.05)  # every read is quick; the whole reply would take > 25 s
    client = JudgeClient(JudgeConfig(server.url, "m", timeout_s=1.0, max_retries=0))
    with pytest.raises(UserError, match=r"did not answer within 1s"):
        client.complete(MESSAGES)
    assert server.sent < len(reply)


def test_an_oversized_reply_is_refused() -> None:
    big = "x" * (2 * 2**20)
    with ScriptedJudge(lambda messages: (200, big)) as judge:
        client = JudgeClient(JudgeConfig(judge.url, judge.model, max_reply_bytes=2**20, max_retries=0))
        with pytest.raises(UserError, match=r"sent a reply over 1048576 bytes"):
            client.complete(MESSAGES)
        small = JudgeClient(JudgeConfig(judge.url, judge.model, max_reply_bytes=4 * 2**20))
        assert small.complete(MESSAGES) == big


def test_rating_option_is_validated(bench: Path, tmp_path: Path) -> None:
    with ScriptedJudge(_rating_by_marker) as judge, pytest.raises(UserError, match=re.escape("option 'rating'")):
        _evaluate(bench, tmp_path / "none.jsonl", judge, tmp_path / "res", rating="gpt")
