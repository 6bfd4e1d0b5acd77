"""Deita: the expected score from logits (golden numbers), the threshold filter, the score cache,
training through the CLI with the tiny model as scorer, and one-line errors for bad options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_atax

import baselines.deita.scoring as scoring
from baselines.deita.method import Deita, DeitaOptions, column_scores
from baselines.deita.prompts import complexity_prompt, quality_prompt
from baselines.deita.scoring import (
    ScoreCache,
    default_cache_path,
    expected_score,
    score_prompts,
    score_token_ids,
)
from harness.config import DataConfig, load_experiment
from harness.data import load_instruction_data
from harness.data.records import InstructionRecord
from harness.errors import UserError
from harness.method import PlanContext
from harness.modeling import load_tokenizer

TINY = "builtin:tiny-llama"
IDS = [9, 3, 5, 0, 7, 1]  # score tokens "1".."6" at scattered, unordered vocabulary positions


def logits_with(score_logits: list[float], fill: float = 0.0, vocab: int = 12) -> torch.Tensor:
    row = torch.full((vocab,), fill, dtype=torch.float64)
    row[IDS] = torch.tensor(score_logits, dtype=torch.float64)
    return row


@pytest.mark.parametrize("score_logits,expected", [
    ([0.0] * 6, 3.5),  # uniform over the six digits
    ([math.log(p) for p in (0.1, 0.2, 0.3, 0.2, 0.1, 0.1)], 3.3),  # Σ k·p_k by hand
    ([0.0] * 5 + [50.0], (15 + 6 * math.exp(50)) / (5 + math.exp(50))),  # almost surely "6"
    ([20.0] + [0.0] * 5, (20 + 1 * math.exp(20)) / (5 + math.exp(20))),  # almost surely "1"
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], sum(k * math.exp(k) for k in range(1, 7)) / sum(math.exp(k) for k in range(1, 7))),
])
def test_expected_score_golden(score_logits, expected):
    assert expected_score(logits_with(score_logits), IDS) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_expected_score_ignores_every_other_token():
    # A huge logit on a non-score token would swamp a softmax over the vocabulary; Deita's is over six tokens.
    base = logits_with([0.5, -1.0, 2.0, 0.0, 1.0, -0.5])
    swamped = logits_with([0.5, -1.0, 2.0, 0.0, 1.0, -0.5], fill=1000.0)
    assert expected_score(swamped, IDS) == pytest.approx(expected_score(base, IDS), abs=1e-12)
    assert expected_score(base + 7.0, IDS) == pytest.approx(expected_score(base, IDS), abs=1e-12)  # shift-invariant
    assert expected_score(base.float().numpy(), IDS) == pytest.approx(expected_score(base, IDS), abs=1e-6)


def test_score_tokens_of_the_tiny_tokenizer_are_the_digits():
    tokenizer = load_tokenizer(TINY)
    ids = score_token_ids(tokenizer)
    assert [tokenizer.decode([i]) for i in ids] == ["1", "2", "3", "4", "5", "6"]


def test_a_digit_that_is_not_one_token_is_an_error():
    class SplitDigits:  # a tokenizer with no digit in its vocabulary that spells each as two pieces
        unk_token_id = 0

        def convert_tokens_to_ids(self, token: str) -> int:
            return 0

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
            return {"input_ids": [5, 6]}

    with pytest.raises(UserError, match=r"^deita scorer x: the score digit '1' is not a single token "
                                        r"\(it encodes to \[5, 6\]\); use a scorer"):
        score_token_ids(SplitDigits(), "x")


def test_prompts_have_the_scorers_trained_format():
    record = InstructionRecord("Sort these.", "3 1 2", "1 2 3")
    assert complexity_prompt(record).endswith("\n##Query: Sort these.\n\n3 1 2  \n##Complexity: ")
    assert quality_prompt(record).endswith("\n #Question#:\nSort these.\n\n3 1 2\n#Response#:\n1 2 3 \n##Quality: ")
    assert complexity_prompt(record).startswith("You are a helpful assistant. Please identify the complexity score")


SCORED_ROWS = [  # the `complexity` column is the precomputed score; 2.5 itself is not above 2.5
    {"instruction": "a", "output": "A", "complexity": 1.2},
    {"instruction": "b", "input": "x", "output": "B", "complexity": 2.5},
    {"instruction": "c", "output": "C", "complexity": 2.51},
    {"instruction": "d", "output": "D", "complexity": 5.9},
    {"instruction": "e", "output": "E", "complexity": 2.0},
    {"instruction": "f", "output": "F", "complexity": 4},
    {"instruction": "g", "output": "G", "complexity": 3.0},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def plan_with(tmp_path: Path, source: Path | str, records: list, **options):
    method = Deita(DeitaOptions(**options))
    return method.plan(records, PlanContext(seed=3, workdir=tmp_path / "work", data_source=str(source)))


def test_filter_keeps_exactly_the_samples_above_the_threshold(tmp_path):
    source = write_jsonl(tmp_path / "scored.jsonl", SCORED_ROWS)
    records = load_instruction_data(DataConfig(source=str(source))).records
    [spec] = plan_with(tmp_path, source, records, scores_column="complexity")
    assert spec.indices == (2, 3, 5, 6) and spec.seed == 3
    report = [json.loads(line) for line in (tmp_path / "work" / "deita_scores.jsonl").read_text().splitlines()]
    assert report == [{"index": i, "complexity": float(r["complexity"]), "kept": i in (2, 3, 5, 6)}
                      for i, r in enumerate(SCORED_ROWS)]
    [spec] = plan_with(tmp_path, source, records, scores_column="complexity", threshold=3.0)
    assert spec.indices == (3, 5)


def test_scores_column_matches_a_subset_by_content(tmp_path):
    source = write_jsonl(tmp_path / "scored.jsonl", SCORED_ROWS)
    records = load_instruction_data(DataConfig(source=str(source), max_samples=4, seed=1)).records
    by_instruction = {r["instruction"]: float(r["complexity"]) for r in SCORED_ROWS}
    assert column_scores(records, str(source), "complexity") == [by_instruction[r.instruction] for r in records]


def test_scores_column_errors(tmp_path):
    rows = [dict(r) for r in SCORED_ROWS]
    del rows[1]["complexity"], rows[4]["complexity"]
    source = write_jsonl(tmp_path / "holes.jsonl", rows)
    records = load_instruction_data(DataConfig(source=str(source))).records
    with pytest.raises(UserError) as info:
        plan_with(tmp_path, source, records, scores_column="complexity")
    assert str(info.value) == (f"scores_column: 2 of 7 records have no 'complexity' value in {source}; give every "
                               "row a number in 'complexity' or unset scores_column")
    with pytest.raises(UserError, match=r"^scores_column: reading 'complexity' from hub dataset 'org/data' is not "
                                        "supported; download it"):
        plan_with(tmp_path, "org/data", records, scores_column="complexity")
    rows[1]["complexity"] = "high"
    write_jsonl(source, rows)
    with pytest.raises(UserError, match=r"holes.jsonl: line 2: 'complexity' must be a finite number \(got 'high'\)"):
        plan_with(tmp_path, source, records, scores_column="complexity")


def test_nothing_kept_is_a_one_line_error(tmp_path):
    source = write_jsonl(tmp_path / "scored.jsonl", SCORED_ROWS)
    records = load_instruction_data(DataConfig(source=str(source))).records
    with pytest.raises(UserError) as info:
        plan_with(tmp_path, source, records, scores_column="complexity", threshold=5.9)
    assert str(info.value) == ("deita: no sample has a complexity score above the threshold 5.9 (the highest is "
                               "5.9); lower methods[].options.threshold")


def cache_rows(path: Path) -> int:
    cache = ScoreCache(path)
    try:
        return cache.count()
    finally:
        cache.close()


def toy_prompts(n: int) -> list[str]:
    records = load_instruction_data(DataConfig(source="builtin:toy-instructions", max_samples=n)).records
    return [complexity_prompt(r) for r in records]


def test_scores_are_cached_and_scoring_resumes(tmp_path, monkeypatch):
    prompts = toy_prompts(10)
    prompts = [*prompts, prompts[0]]  # a repeated prompt is scored once
    cache = tmp_path / "scores.sqlite"
    real_batch = scoring.score_batch
    calls = []

    def crash_after_two_batches(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # an interrupted run
        calls.append(1)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_batch", crash_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        score_prompts(prompts, TINY, "complexity", batch_size=3, cache_path=cache)
    assert cache_rows(cache) == 6  # two whole batches were committed
    monkeypatch.setattr(scoring, "score_batch", real_batch)
    resumed = score_prompts(prompts, TINY, "complexity", batch_size=3, cache_path=cache)
    assert resumed.n_computed == 4 and cache_rows(cache) == 10
    again = score_prompts(prompts, TINY, "complexity", batch_size=3, cache_path=cache)
    assert again.n_computed == 0 and again.scores == resumed.scores and cache_rows(cache) == 10
    assert all(1.0 < s < 6.0 for s in again.scores) and again.scores[0] == again.scores[-1]
    # Scores do not depend on batch neighbours (left padding with real positions): one by one, the same.
    one_by_one = score_prompts(prompts, TINY, "complexity", batch_size=1, cache_path=tmp_path / "other.sqlite")
    torch.testing.assert_close(one_by_one.scores, again.scores, rtol=0, atol=1e-5)
    # Another kind or another max_length is another cache entry.
    assert score_prompts(prompts[:2], TINY, "quality", cache_path=cache).n_computed == 2


def test_combined_score_is_complexity_times_quality(tmp_path):
    records = load_instruction_data(DataConfig(source="builtin:toy-instructions", max_samples=6)).records
    [spec] = plan_with(tmp_path, "builtin:toy-instructions", records, scorer=TINY, quality_scorer=TINY,
                       score="combined", threshold=1.0)
    report = [json.loads(line) for line in (tmp_path / "work" / "deita_scores.jsonl").read_text().splitlines()]
    assert all(r["combined"] == r["complexity"] * r["quality"] for r in report)
    assert spec.indices == tuple(range(6)) and all(r["kept"] for r in report)


def experiment(tmp_path: Path, **deita_options) -> Path:
    exp = {"name": "deita-test", "base_model": {"id": TINY},
           "data": {"source": "builtin:toy-instructions", "max_samples": 40},
           "training": {"batch_size": 8, "max_seq_len": 192, "max_steps": 2, "scheduler": {"warmup_steps": 1}},
           "methods": [{"name": "deita", "options": deita_options}], "results_dir": "res"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def test_train_deita_with_the_tiny_scorer(tmp_path):
    # Score in-process first: the CLI shares this session's cache (ATAX_CACHE), so it reuses these
    # scores, and the threshold can sit between the middle two, whatever the untrained model says.
    scored = score_prompts(toy_prompts(40), TINY, "complexity")
    low, high = sorted(scored.scores)[19:21]
    assert low < high
    threshold = (low + high) / 2
    cached = cache_rows(default_cache_path())
    result = run_atax("train", "--config", str(experiment(tmp_path, scorer=TINY, threshold=threshold)),
                      "--method", "deita", "--quiet")
    assert result.returncode == 0, result.stderr
    assert cache_rows(default_cache_path()) == cached  # nothing was scored twice
    # combine is the identity: the final checkpoint is the one run's, which the CLI prints.
    checkpoint = Path(result.stdout.strip().splitlines()[-1].split(": ", 1)[1].split(",")[0])
    manifest = json.loads((checkpoint / "checkpoint.json").read_text())
    assert manifest["kind"] == "lora" and manifest["data"]["n_records"] == 20
    report = [json.loads(line) for line in
              (tmp_path / "res" / "work" / "deita-seed0" / "deita_scores.jsonl").read_text().splitlines()]
    assert [r["complexity"] for r in report] == scored.scores
    assert [r["index"] for r in report if r["kept"]] == [i for i, s in enumerate(scored.scores) if s > threshold]


@pytest.mark.parametrize("options,key,message", [
    ({"threshold": 7}, "threshold", "methods[0].options.threshold: must be within [1, 6] for score 'complexity' "
                                    "(got 7)"),
    ({"score": "combined", "threshold": 40}, "threshold",
     "methods[0].options.threshold: must be within [1, 36] for score 'combined' (got 40)"),
    ({"thresh": 3}, "thresh", "methods[0].options.thresh: unknown key; allowed: scorer, quality_scorer, score, "
                              "threshold, batch_size, max_length, scores_column"),
    ({"score": "evol"}, "score", "methods[0].options.score: must be one of 'complexity', 'quality' or 'combined' "
                                 "(got 'evol')"),
])
def test_bad_deita_options(tmp_path, options, key, message):
    path = experiment(tmp_path, **options)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if text.strip().startswith(key))
    with pytest.raises(UserError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}:{line}: {message}"


def test_bad_option_through_the_cli(tmp_path):
    path = experiment(tmp_path, threshold=0.5)
    result = run_atax("config", "check", str(path))
    assert result.returncode == 2
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if "threshold" in text)
    assert result.stderr == (f"error: {path}:{line}: methods[0].options.threshold: must be within [1, 6] for "
                             "score 'complexity' (got 0.5)\n")
