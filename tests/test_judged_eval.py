"""MT-bench and Vicuna-bench end to end on the tiny model, offline, on project-written questions:
judged by `atax serve` (the tiny model) and by a scripted judge over real HTTP; answers, judgments
and scores stored; reruns reuse everything; a killed run resumes without re-sending; judge
failures end in one-line errors with nothing stored as a score."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import run_atax
from judged_fixtures import (
    QUESTIONS,
    REFERENCES,
    VICUNA,
    VICUNA_REFERENCES,
    ScriptedJudge,
    atax_serve,
    free_port,
    marker_of,
    server_stats,
    write_bench,
)

from harness.errors import UserError
from harness.evaluate.chat_server import messages_hash
from harness.evaluate.runner import EvalRequest, run_eval
from harness.store import ResultsStore
from harness.store.judgments import count_judgments

pytestmark = pytest.mark.slow
KEY = "sk-test-not-a-real-key-1234"
KEY_ENV = "ATAX_TEST_JUDGE_KEY"
TINY = "builtin:tiny-llama"


@pytest.fixture(scope="module")
def benches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    return {"mt_bench": write_bench(root / "mt_bench", QUESTIONS, REFERENCES),
            "vicuna_bench": write_bench(root / "vicuna_bench", VICUNA, VICUNA_REFERENCES)}


@pytest.fixture(scope="module")
def served() -> Any:
    # The judge's answers are capped at 8 tokens: the tiny model writes noise, and noise is slow.
    with atax_serve("--max-tokens", "8", env={"ATAX_SERVE_API_KEY": KEY}) as url:
        yield url


def evaluate(suite: str, results: Path, target: str = TINY, **options: Any) -> Any:
    options = {"max_new_tokens": 8, "concurrency": 4, "backoff_s": 0.01, **options}
    return run_eval(EvalRequest(target, suite, options, "hf", {"batch_size": 8}, results, cache=False)).results[0]


def test_mt_bench_cli_with_atax_serve_as_judge(benches: dict[str, Path], served: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    results = tmp_path / "results"
    proc = run_atax("eval", TINY, "--suite", "mt_bench", "--questions", str(benches["mt_bench"]), "--judge-url",
                    served, "--judge-model", TINY, "--max-gen-toks", "8", "--results", str(results), "--json",
                    "--quiet", "--limit", "3", "-o", "second_turn=true", "-o", f"judge_api_key_env={KEY_ENV}",
                    timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["mt_bench"]
    assert summary["n"] == 6 and 0 <= summary["n_missing"] <= 3  # the tiny judge rarely writes [[x]]
    assert server_stats(served, KEY)["completions"] >= 6
    with ResultsStore.open(results) as store:
        items = store.items(checkpoint=TINY, benchmark="mt_bench")
        assert [i.item_id for i in items[:2]] == ["1/turn1", "1/turn2"]
        for item in items:
            assert isinstance(item.prediction, str) and isinstance(item.extra["judgment"], str)
            assert item.extra["missing"] == (item.score is None)
        first = next(i for i in items if i.item_id == "2/turn1")
        assert first.target == "42" and first.extra["judge_prompt"] == "single-math-v1"
        assert first.extra["answer_prompt"].startswith("Below is an instruction") and "<<q2>>" in first.extra["answer_prompt"]
        scores = {s.metric: s for s in store.scores(checkpoint=TINY, suite="mt_bench")}
        assert scores["n_missing"].value == summary["n_missing"]
        assert scores["n_missing"].run_meta["judge"]["model"] == TINY
        assert count_judgments(store, TINY) == 6
    assert KEY.encode() not in (results / "results.sqlite").read_bytes()  # the key is never stored


def test_vicuna_bench_with_atax_serve_as_judge(benches: dict[str, Path], served: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    result = evaluate("vicuna_bench", tmp_path, questions=str(benches["vicuna_bench"]), judge_url=served,
                      judge_model=TINY)
    assert result.benchmark == "vicuna_bench" and result.n == 4
    assert result.meta["judge_requests_sent"] == 4 and result.meta["reference_answers"].endswith("gpt-4.jsonl")
    math_item = next(i for i in result.items if i.extra["category"] == "math")
    assert math_item.target == "81" and math_item.extra["judge_prompt"] == "single-math-v1"


def test_judge_errors_from_atax_serve_are_one_line_and_store_no_score(benches: dict[str, Path], served: str,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    common = {"questions": str(benches["vicuna_bench"]), "judge_url": served, "limit": 1,
              "judge_api_key_env": KEY_ENV}
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UserError, match=rf"HTTP 401.*no API key was sent \(\${KEY_ENV} is unset\)"):
        evaluate("vicuna_bench", tmp_path, judge_model=TINY, **common)
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-5678")
    with pytest.raises(UserError, match="was refused") as caught:
        evaluate("vicuna_bench", tmp_path, judge_model=TINY, **common)
    assert "sk-wrong-key-5678" not in str(caught.value)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(UserError, match="judge model 'gpt-4' is not served .*check --judge-model") as caught:
        evaluate("vicuna_bench", tmp_path, judge_model="gpt-4", **common)
    assert "\n" not in str(caught.value)
    with ResultsStore.open(tmp_path) as store:
        assert store.scores(suite="vicuna_bench") == [] and count_judgments(store) == 0
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{served}/models", headers={"Authorization": f"Bearer {KEY}"})
    with opener.open(request, timeout=5) as response:
        assert [m["id"] for m in json.loads(response.read())["data"]] == [TINY]
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{served}/models", timeout=5)
    assert refused.value.code == 401


SCRIPT = {"q1": "Clear and vivid. Rating: [[7]]", "q2": "I cannot decide on this one.", "q3": "Rating: [[11]]",
          "q4": "[[7.5]] Good, though it could say more about density.",
          "q5": "Rating: [[3]]. A corrected answer would earn [[9]].", "q6": "Fine roleplay. Rating: [6]"}


def test_scripted_judge_ratings_flow_to_scores_and_reruns_pay_nothing(benches: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    with ScriptedJudge(lambda m: (200, SCRIPT[marker_of(m) or ""])) as judge:
        options = {"questions": str(benches["mt_bench"]), "judge_url": judge.url, "judge_model": judge.model}
        result = evaluate("mt_bench", tmp_path, **options)
        scores = {i.item_id: i.score for i in result.items}
        assert scores == {"1/turn1": 7.0, "2/turn1": None, "3/turn1": None, "4/turn1": 7.5, "5/turn1": 3.0,
                          "6/turn1": 6.0}
        values = result.values()
        assert values["score"] == pytest.approx((7 + 7.5 + 3 + 6) / 4) and values["n_missing"] == 2
        assert values["score_writing"] == 7.0 and values["score_reasoning"] == 3.0 and "score_math" not in values
        reference_prompt = next(m for m in judge.answered if marker_of(m) == "q2")[1]["content"]
        assert "42" in reference_prompt and "[[rating]]" in reference_prompt
        assert judge.requests == 6
        again = evaluate("mt_bench", tmp_path, **options)
        assert judge.requests == 6 and again.meta["answers_reused"] == 6 and again.values() == values
    with ResultsStore.open(tmp_path) as store:
        stored = {s.metric: s.value for s in store.scores(suite="mt_bench")}
    assert stored == values


def test_judge_repeats_take_the_median_and_reuse_the_first_repeat(benches: dict[str, Path], tmp_path: Path) -> None:
    replies = iter(["[[5]]", "[[9]]", "[[6]]"] * 20)
    with ScriptedJudge(lambda m: (200, "Rating: [[4]]")) as judge:
        evaluate("vicuna_bench", tmp_path, questions=str(benches["vicuna_bench"]), judge_url=judge.url,
                 judge_model=judge.model)
        judge.reply = lambda m: (200, next(replies))
        result = evaluate("vicuna_bench", tmp_path, questions=str(benches["vicuna_bench"]), judge_url=judge.url,
                          judge_model=judge.model, judge_repeats=3, concurrency=1)
        assert judge.requests == 4 + 8  # repeat 0 came from the cache
    # Each question: cached [[4]] plus two of 5, 9, 6 in turn -> medians of (4, 5, 9), (4, 6, 5), ...
    for item in result.items:
        assert item.score == sorted(item.extra["judge_scores"])[1] and len(item.extra["judgments"]) == 3


def test_chat_checkpoint_answers_with_its_chat_template(benches: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = tmp_path / "chat-run"
    checkpoint.mkdir()
    (checkpoint / "checkpoint.json").write_text(json.dumps({
        "kind": "base", "run_key": "chat-run", "base_model": {"id": TINY}, "training": {"template": "chat"}}))
    with ScriptedJudge(lambda m: (200, "[[5]]")) as judge:
        result = evaluate("mt_bench", tmp_path / "results", target=str(checkpoint), limit=1, second_turn=True,
                          questions=str(benches["mt_bench"]), judge_url=judge.url, judge_model=judge.model)
    first, second = result.items
    assert result.meta["template"] == "chat" and result.meta["template_source"] == "checkpoint"
    assert first.extra["answer_prompt"] == f"<s><|user|>\n{QUESTIONS[0]['turns'][0]}\n<|assistant|>\n"
    assert f"<|assistant|>\n{first.prediction}</s>\n<|user|>\n{QUESTIONS[0]['turns'][1]}" in second.extra["answer_prompt"]
    assert second.extra["judge_prompt"] == "single-v1-multi-turn"


def test_a_killed_judging_run_resumes_without_resending(benches: dict[str, Path], tmp_path: Path) -> None:
    results = tmp_path / "results"
    with ScriptedJudge(lambda m: (200, "Rating: [[5]]"), delay_s=0.3) as judge:
        args = ["eval", TINY, "--suite", "mt_bench", "--questions", str(benches["mt_bench"]), "--judge-url",
                judge.url, "--judge-model", judge.model, "--max-gen-toks", "4", "--results", str(results),
                "--quiet", "-o", "second_turn=true", "-o", "concurrency=2"]
        proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 120
            while len(judge.answered) < 4 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        time.sleep(judge.delay_s + 0.5)  # requests in flight at the kill are still answered by the server
        first_round = [messages_hash(m) for m in judge.answered]
        with ResultsStore.open(results) as store:
            from harness.store.connection import read_transaction

            with read_transaction(store._conn) as conn:  # noqa: SLF001 (a test reading the raw cache)
                stored = {messages_hash(json.loads(p)) for (p,) in conn.execute("SELECT prompt FROM judgments")}
        assert 2 <= len(stored) < 12 and stored <= set(first_round)
        judge.answered.clear()
        proc2 = run_atax(*args, timeout=300)
        assert proc2.returncode == 0, proc2.stderr
        second_round = [messages_hash(m) for m in judge.answered]
    assert not stored & set(second_round)  # nothing answered and stored was sent again
    # Only answers lost in flight (sent back as the client was killed, never stored) are asked again.
    in_flight = set(first_round) - stored
    assert len(in_flight) <= 2 and set(second_round) & set(first_round) <= in_flight
    assert len(second_round) == 12 - len(stored) and len(set(second_round)) == len(second_round)
    with ResultsStore.open(results) as store:
        assert count_judgments(store) == 12
        assert {s.metric: s.value for s in store.scores(suite="mt_bench")}["score"] == 5.0


def test_endpoint_down_fails_after_retries_and_stores_no_score(benches: dict[str, Path], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(UserError, match=r"not reachable .* after 2 tries") as caught:
        evaluate("vicuna_bench", tmp_path, questions=str(benches["vicuna_bench"]), judge_url=url,
                 judge_model="judge", limit=2, max_retries=1)
    assert "\n" not in str(caught.value) and url in str(caught.value)
    with ResultsStore.open(tmp_path) as store:
        assert store.scores() == [] and count_judgments(store) == 0


def test_cli_judge_option_errors_are_one_line_exit_2(benches: dict[str, Path], tmp_path: Path) -> None:
    proc = run_atax("eval", TINY, "--suite", "mt_bench", "--questions", str(benches["mt_bench"]), "--judge-url",
                    "ftp://127.0.0.1/v1", "--judge-model", "judge", "--results", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: suite 'mt_bench': option 'judge_url': 'ftp://127.0.0.1/v1' is not an http(s) URL; give the API "
        "base, e.g. http://127.0.0.1:8000/v1"]


def test_missing_judge_options_fail_before_any_model_loads(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="suite 'mt_bench': .*give exactly one of judge_url \\(an endpoint\\) or "
                                        "judge_serve"):
        run_eval(EvalRequest(TINY, "mt_bench", {"judge_model": "m"}, "hf", {}, tmp_path))
    with pytest.raises(UserError, match="no questions given; pass --questions"):
        run_eval(EvalRequest(TINY, "vicuna_bench", {"judge_model": "m", "judge_url": "http://127.0.0.1:1/v1"},
                             "hf", {}, tmp_path))


def test_judge_serve_starts_a_local_judge_for_the_run(tmp_path: Path) -> None:
    options = {"questions": "builtin:toy-vicuna-bench", "judge_serve": TINY, "judge_model": "tiny-judge",
               "max_new_tokens": 4, "judge_max_tokens": 16, "limit": 2}
    outcome = run_eval(EvalRequest(TINY, "vicuna_bench", options, "hf", {}, tmp_path))
    (result,) = outcome.results
    assert len(result.items) == 2
    with ResultsStore.open(tmp_path) as store:
        assert count_judgments(store, "tiny-judge") == 2  # both answers were sent to the served judge
    assert result.meta["judge"]["serve"] == TINY and result.meta["judge_requests_sent"] == 2


def test_a_judge_serve_model_that_does_not_exist_is_one_line_naming_the_option(tmp_path: Path) -> None:
    options = {"questions": "builtin:toy-vicuna-bench", "judge_serve": str(tmp_path / "no-judge"),
               "judge_model": "tiny-judge", "max_new_tokens": 2, "limit": 1}
    with pytest.raises(UserError) as info:
        run_eval(EvalRequest(TINY, "vicuna_bench", options, "hf", {}, tmp_path))
    assert str(info.value).startswith(f"judge_serve: '{tmp_path / 'no-judge'}' is neither a directory nor a hub id")
