"""Judged suites without a model: rating parsing (hostile outputs), question / reference / prompt
loading, template choice, scoring, the v1->v2 store migration, and the judge client against real
HTTP servers on loopback (endpoint down, wrong model, 401, timeouts, 429 and 5xx retries)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from judged_fixtures import QUESTIONS, REFERENCES, ScriptedJudge, free_port, write_bench

from harness.errors import UserError
from harness.evaluate.target import EvalTarget
from harness.store import ResultsStore
from harness.store.connection import connect
from harness.store.judgments import Judgment, add_judgment, cached_judgments
from harness.store.schema import MIGRATIONS, ensure_schema
from suites.judged.generation import Answer, temperature_for, training_template
from suites.judged.judge_client import JudgeClient, JudgeConfig, run_bounded
from suites.judged.judge_prompts import ATAX_PROMPTS, load_judge_prompts, prompt_name
from suites.judged.parsing import median, parse_rating
from suites.judged.questions import load_questions, load_reference_answers, with_references
from suites.judged.scoring import items_and_scores, judge_jobs

MESSAGES = [{"role": "user", "content": "rate this"}]


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is clear and correct.\n\nRating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [[10]]. I hope this helps! Let me know if you need more.", 10.0),  # text after the rating
    ("A thorough answer, rated [[9]]; a revised answer would earn [[10]].", 9.0),  # first wins, as FastChat
    ("No rating was given here at all.", None),
    ("Rating: [[11]]", None),  # off the 1-10 scale: missing, not clipped
    ("Rating: [[0]]", None),
    ("Rating: [[-3]]", None),
    ("print(arr[0])  # the fallback would read [0]: off scale, missing", None),
    ("Rating: [5]", 5.0),  # FastChat's fallback
    ("Rating: [[seven]]", None),
    ("", None),
])
def test_parse_rating_gives_the_score_or_missing(text: str, expected: float | None) -> None:
    assert parse_rating(text) == expected


def test_median_of_repeats_skips_missing() -> None:
    assert median([7.0, 9.0, 8.0]) == 8.0
    assert median([6.0, 9.0]) == 7.5
    assert median([]) is None


def test_questions_references_and_prompts_load_from_fastchat_layout(tmp_path: Path) -> None:
    path = write_bench(tmp_path / "mt", QUESTIONS, REFERENCES)
    loaded = load_questions(str(path.parent))  # the directory works as well as the file
    assert [q.question_id for q in loaded.questions] == [str(q["question_id"]) for q in QUESTIONS]
    assert loaded.meta["n"] == 6 and len(loaded.meta["sha256"]) == 64
    refs = load_reference_answers(path.parent / "reference_answer" / "gpt-4.jsonl")
    questions = {q.question_id: q for q in with_references(loaded.questions, refs)}
    assert questions["2"].reference == ("42", "84") and questions["1"].reference == ()
    assert prompt_name("math", 1) == "single-math-v1" and prompt_name("writing", 2) == "single-v1-multi-turn"
    assert temperature_for("writing") == 0.7 and temperature_for("math") == 0.0
    assert temperature_for("stem") == 0.1 and temperature_for("generic") == 0.7
    for prompt in ATAX_PROMPTS.values():  # our own wording keeps FastChat's output format
        assert "[[rating]]" in prompt.system_prompt + prompt.prompt_template


@pytest.mark.parametrize(("content", "message"), [
    ('{"question_id": 1, "category": "math"}\n', "turns"),
    ('{"question_id": 1, "category": "math", "turns": "not a list"}\n', "turns"),
    ("not json\n", "not valid JSON"),
    ('{"question_id": 1, "category": "x", "turns": ["a"]}\n{"question_id": 1, "category": "x", "turns": ["b"]}\n',
     "twice"),
])
def test_bad_question_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "question.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as caught:
        load_questions(str(path))
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_missing_question_file_and_offline_hub_id_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_questions(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="cannot load hub dataset 'someone/mt-bench-copy'.*local copy"):
        load_questions("someone/mt-bench-copy")  # HF_HUB_OFFLINE=1 in tests


def test_judge_prompts_file_must_hold_the_needed_single_prompts(tmp_path: Path) -> None:
    partial = tmp_path / "judge_prompts.jsonl"
    partial.write_text(json.dumps({"name": "single-v1", "type": "single", "system_prompt": "s",
                                   "prompt_template": "{question} {answer}", "output_format": "[[rating]]"}) + "\n")
    prompts, meta = load_judge_prompts(partial, {"single-v1"})
    assert prompts["single-v1"].messages(question="Q", answer="A")[1]["content"] == "Q A"
    assert meta["source"] == str(partial) and len(meta["sha256"]) == 64
    with pytest.raises(UserError, match="lacks single-math-v1"):
        load_judge_prompts(partial, {"single-v1", "single-math-v1"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"name": "single-v1", "type": "single", "system_prompt": "s",
                               "prompt_template": "{question} {colour}", "output_format": "[[rating]]"}) + "\n")
    with pytest.raises(UserError, match="template field"):
        load_judge_prompts(bad, {"single-v1"})


def test_template_follows_the_checkpoint_and_its_merge_inputs(tmp_path: Path) -> None:
    def target(provenance: dict) -> EvalTarget:
        return EvalTarget("ref", "key", "lora", "hash", provenance=provenance)

    assert training_template(target({"training": {"template": "chat"}}), "auto") == ("chat", "checkpoint")
    assert training_template(target({}), "auto") == ("alpaca", "default")
    assert training_template(target({"training": {"template": "chat"}}), "alpaca") == ("alpaca", "option")
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.json").write_text(json.dumps({"kind": "lora", "training": {"template": "chat"}}))
    merged = {"merge": {"op": "average", "inputs": [{"path": str(run), "run_key": "r"}]}}
    assert training_template(target(merged), "auto") == ("chat", "checkpoint")


def test_scores_count_missing_never_as_zero() -> None:
    questions = load_like(QUESTIONS[:3])
    answers = {1: {q.question_id: Answer(f"answer {q.question_id}", "p", 0.0, False) for q in questions}}
    jobs = judge_jobs(questions, answers, ATAX_PROMPTS, 2, 0.0, 64)
    texts = {("1", 0): "[[8]]", ("1", 1): "[[6]]", ("2", 0): "no rating", ("2", 1): "[[12]]",
             ("3", 0): "[[4]]", ("3", 1): "nothing"}
    judged = {(j.prompt_hash, j.repeat): Judgment("m", j.prompt_hash, j.repeat, j.prompt_json,
                                                  texts[(j.question.question_id, j.repeat)],
                                                  parse_rating(texts[(j.question.question_id, j.repeat)]))
              for j in jobs}
    items, scores = items_and_scores(questions, answers, jobs, judged)
    by_id = {i.item_id: i for i in items}
    assert by_id["1/turn1"].score == 7.0 and by_id["3/turn1"].score == 4.0
    assert by_id["2/turn1"].score is None and by_id["2/turn1"].extra["missing"] is True
    assert by_id["2/turn1"].extra["judgments"] == ["no rating", "[[12]]"]
    values = {s.metric: s for s in scores}
    assert values["score"].value == 5.5 and values["score"].n == 2
    assert values["n_missing"].value == 1.0
    assert values["score_writing"].value == 7.0 and values["score_coding"].value == 4.0
    assert "score_math" not in values  # its only item is missing: no mean, not a 0


def load_like(rows: list[dict]) -> list:
    from suites.judged.questions import _question

    return with_references([_question(r, "test") for r in rows], {str(k): tuple(v) for k, v in REFERENCES.items()})


def test_v1_store_migrates_to_v2_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    conn = connect(db)
    ensure_schema(conn, db, MIGRATIONS[:1])
    conn.execute("INSERT INTO checkpoints (key, path, kind, content_hash, created_at) VALUES ('c', 'p', 'lora', 'h', 't')")
    conn.close()
    with ResultsStore(db) as store:
        assert store.checkpoint("c") is not None
        add_judgment(store, Judgment("judge", "h1", 0, "[]", "Rating: [[5]]", 5.0))
        add_judgment(store, Judgment("judge", "h1", 0, "[]", "a second answer", None))  # the first is kept
        assert cached_judgments(store, "judge", ["h1", "h2"])[("h1", 0)].score == 5.0
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"judgments", "generations"} <= tables


# ---- the judge client against real servers on loopback ------------------------------------------

def client(url: str, **overrides: object) -> JudgeClient:
    config = {"url": url, "model": "scripted-judge", "timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01,
              "max_tokens": 64, **overrides}
    return JudgeClient(JudgeConfig(**config))  # type: ignore[arg-type]


def test_endpoint_down_fails_after_the_retries_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(UserError, match=r"not reachable .* after 3 tries") as caught:
        client(url).complete(MESSAGES)
    assert "\n" not in str(caught.value) and url in str(caught.value)


def test_wrong_model_and_bad_requests_are_not_retried() -> None:
    with ScriptedJudge(lambda m: (400, "context too long")) as judge:
        with pytest.raises(UserError, match="judge model 'other' is not served .*--judge-model"):
            client(judge.url, model="other").complete(MESSAGES)
        assert judge.requests == 1
        with pytest.raises(UserError, match="rejected the request .*HTTP 400: context too long"):
            client(judge.url).complete(MESSAGES)
        assert judge.requests == 2


def test_timeouts_retry_with_backoff_then_fail() -> None:
    with ScriptedJudge(lambda m: (200, "[[5]]"), delay_s=1.0) as judge:
        started = time.monotonic()
        with pytest.raises(UserError, match=r"did not answer within 0.2s .* after 2 tries"):
            client(judge.url, timeout_s=0.2, max_retries=1).complete(MESSAGES)
        assert judge.requests == 2 and time.monotonic() - started < 3


def test_429_and_5xx_are_retried_until_an_answer() -> None:
    statuses = iter([(429, "slow down"), (503, "overloaded"), (200, "Rating: [[6]]")])
    with ScriptedJudge(lambda m: next(statuses)) as judge:
        assert client(judge.url).complete(MESSAGES) == "Rating: [[6]]"
        assert judge.requests == 3
    with ScriptedJudge(lambda m: (500, "boom")) as judge:
        with pytest.raises(UserError, match=r"HTTP 500: boom.* after 3 tries"):
            client(judge.url).complete(MESSAGES)
        assert judge.requests == 3


def test_run_bounded_keeps_finished_work_and_raises_the_first_failure() -> None:
    kept: list[int] = []

    def work(n: int) -> int:
        if n == 3:
            raise UserError("judge failed")
        return n * 10

    with pytest.raises(UserError, match="judge failed"):
        run_bounded(range(6), work, lambda n, result: kept.append(result), concurrency=1)
    assert kept == [0, 10, 20]  # in order with one worker; nothing after the failure started


def test_experiment_files_configure_the_judged_suites(tmp_path: Path) -> None:
    from harness.config import load_experiment

    def experiment(options: str) -> Path:
        path = tmp_path / "experiment.yaml"
        path.write_text("name: judged\nbase_model: {id: builtin:tiny-llama}\ndata: {source: builtin:toy-instructions}\n"
                        "methods: [vanilla]\nseeds: [0]\nsuites:\n  - name: mt_bench\n    options: " + options + "\n")
        return path

    loaded = load_experiment(experiment("{questions: data/mt_bench/question.jsonl, judge_url: 'http://127.0.0.1:8000/v1', "
                                        "judge_model: judge, judge_repeats: 3, second_turn: true}"))
    assert loaded.suites[0].options["judge_repeats"] == 3
    with pytest.raises(UserError, match=r"experiment.yaml:\d+: suites\[0\]\.options\.judge_ur: unknown key") as caught:
        load_experiment(experiment("{judge_ur: 'http://127.0.0.1:8000/v1', judge_model: judge}"))
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match=r"experiment.yaml:\d+: suites\[0\]\.options: give exactly one of judge_url "
                                        r"\(an endpoint\) or judge_serve \(a model atax serves\)"):
        load_experiment(experiment("{judge_model: judge}"))
