"""Deita's LLM scores: the expected score under a scorer's next-token distribution over "1".."6".

Deita (Liu et al., ICLR 2024) reads the logits of the six score tokens at the first generated
position, normalises them with a softmax over those six tokens only (every other token is
ignored), and takes the expected value Σ k·p_k. Scoring is batched and cached in SQLite per
(scorer, kind, max_length, sha256 of the prompt), committed batch by batch, so an interrupted
run resumes where it stopped and a repeated run loads no model at all.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.deita.prompts import CLOSING_MARKERS, ScoreKind
from harness.builtin import is_builtin
from harness.errors import UserError
from harness.keys import content_key
from harness.paths import cache_dir

logger = logging.getLogger(__name__)

SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")
_SQL_CHUNK = 500  # stay under SQLite's limit on bound variables per statement


def expected_score(logits_row: Any, score_token_ids: Sequence[int]) -> float:
    """Σ k·p_k with p = softmax over the logits of the tokens "1".."6" only (Deita's normalisation)."""
    import torch

    if len(score_token_ids) != len(SCORE_DIGITS):
        raise ValueError(f"expected {len(SCORE_DIGITS)} score token ids, got {len(score_token_ids)}")
    # float64: the softmax of six logits is cheap and golden tests compare to 1e-9.
    picked = torch.as_tensor(logits_row, dtype=torch.float64).reshape(-1)[list(score_token_ids)]
    probs = torch.softmax(picked, dim=0)
    return float((probs * torch.arange(1, len(SCORE_DIGITS) + 1, dtype=torch.float64)).sum())


def score_token_ids(tokenizer: Any, scorer: str = "the scorer") -> list[int]:
    """The ids of "1".."6": the vocabulary entry, else the single token the digit encodes to.

    Vocabulary lookup first, because SentencePiece tokenizers (Llama, Mistral) encode a lone "1"
    as ["▁", "1"] while the scorer emits the bare "1" piece (Deita's hard-coded ids are these).
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    ids: list[int] = []
    for digit in SCORE_DIGITS:
        token_id = tokenizer.convert_tokens_to_ids(digit)
        if token_id is None or token_id == unk:
            encoded = list(tokenizer(digit, add_special_tokens=False)["input_ids"])
            if len(encoded) != 1:
                raise UserError(f"deita scorer {scorer}: the score digit '{digit}' is not a single token "
                                f"(it encodes to {encoded}); use a scorer whose tokenizer has one token per digit")
            token_id = encoded[0]
        ids.append(int(token_id))
    if len(set(ids)) != len(ids):
        raise UserError(f"deita scorer {scorer}: the score digits map to repeated token ids {ids}; "
                        "use a scorer whose tokenizer has one token per digit")
    return ids


def _truncate(ids: list[int], max_length: int, keep_last: int) -> list[int]:
    """Cut from the middle so the prompt's closing marker, where the scorer answers, survives."""
    if len(ids) <= max_length:
        return ids
    keep_last = min(keep_last, max_length - 1)
    return ids[: max_length - keep_last] + (ids[-keep_last:] if keep_last else [])


def score_batch(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_length: int = 2048,
                keep_last: int = 0, token_ids: Sequence[int] | None = None) -> list[float]:
    """Expected scores of `prompts` from one forward pass: left-padded, logits of the last position."""
    import torch

    token_ids = list(token_ids) if token_ids is not None else score_token_ids(tokenizer)
    # The tokenizer adds BOS, as Deita's `tokenizer.encode(prompt)` does.
    encoded = [_truncate(list(tokenizer(p, add_special_tokens=True)["input_ids"]), max_length, keep_last)
               for p in prompts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention[row, width - len(ids):] = 1
    # Positions count real tokens only; models default to 0..width-1, which would shift every
    # left-padded prompt and make a score depend on its batch neighbours.
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                    position_ids=position_ids.to(device), logits_to_keep=1)
    last = out.logits[:, -1, :].float().cpu()
    return [expected_score(row, token_ids) for row in last]


def scorer_key(ref: str) -> str:
    """The scorer's identity in the cache: the reference, plus file stamps for a local directory
    (so a model replaced in place is not served stale scores)."""
    path = Path(ref).expanduser()
    if is_builtin(ref) or not path.is_dir():
        return ref
    stamps = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in path.rglob("*") if p.is_file())
    return f"{path.resolve()}@{content_key(stamps, 12)}"


def default_cache_path() -> Path:
    return cache_dir() / "deita" / "scores.sqlite"


class ScoreCache:
    """(scorer, kind, max_length, prompt sha256) -> score, in SQLite (WAL: readers never block a writer)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (scorer TEXT NOT NULL, kind TEXT NOT NULL, "
                         "max_length INTEGER NOT NULL, prompt_sha256 TEXT NOT NULL, score REAL NOT NULL, "
                         "PRIMARY KEY (scorer, kind, max_length, prompt_sha256))")
        self._db.commit()

    def get(self, scorer: str, kind: str, max_length: int, hashes: Iterable[str]) -> dict[str, float]:
        wanted = sorted(set(hashes))
        found: dict[str, float] = {}
        for start in range(0, len(wanted), _SQL_CHUNK):
            chunk = wanted[start:start + _SQL_CHUNK]
            rows = self._db.execute(
                f"SELECT prompt_sha256, score FROM scores WHERE scorer = ? AND kind = ? AND max_length = ? "
                f"AND prompt_sha256 IN ({','.join('?' * len(chunk))})", (scorer, kind, max_length, *chunk))
            found.update(rows)
        return found

    def put(self, scorer: str, kind: str, max_length: int, scores: dict[str, float]) -> None:
        with self._db:  # one transaction: a batch is cached whole or not at all
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)",
                                 [(scorer, kind, max_length, h, s) for h, s in scores.items()])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Scored:
    scores: list[float]  # one per prompt, in order
    n_computed: int  # distinct prompts the model scored in this call (0: all came from the cache)


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def load_scorer(ref: str) -> tuple[Any, Any]:
    """Model (eval mode, on the picked device) and a left-padding tokenizer, by hub id, path or builtin:."""
    from harness.modeling import load_causal_lm, load_tokenizer, pick_device

    try:
        tokenizer = load_tokenizer(ref)
        model = load_causal_lm(ref, None, "auto", pick_device())
    except UserError as exc:
        # The shared loader names base_model.id; here the reference came from the deita options.
        raise UserError(f"deita scorer: {str(exc).removeprefix('base_model.id: ')}") from None
    tokenizer.padding_side = "left"
    return model.eval(), tokenizer


def score_prompts(prompts: Sequence[str], scorer: str, kind: ScoreKind, *, batch_size: int = 8,
                  max_length: int = 2048, cache_path: Path | None = None) -> Scored:
    """Scores for `prompts`, from the cache where known; the model loads only if some are missing."""
    hashes = [prompt_hash(p) for p in prompts]
    key = scorer_key(scorer)
    cache = ScoreCache(cache_path or default_cache_path())
    try:
        known = cache.get(key, kind, max_length, hashes)
        missing = sorted({h: p for h, p in zip(hashes, prompts, strict=True) if h not in known}.items(),
                         key=lambda item: len(item[1]))  # similar lengths together: less padding
        if missing:
            logger.info("deita: scoring %d %s prompts with %s (%d cached)", len(missing), kind, scorer,
                        len(set(hashes)) - len(missing))
            model, tokenizer = load_scorer(scorer)
            token_ids = score_token_ids(tokenizer, scorer)
            keep_last = len(tokenizer(CLOSING_MARKERS[kind], add_special_tokens=False)["input_ids"])
            for start in range(0, len(missing), batch_size):
                chunk = missing[start:start + batch_size]
                scores = score_batch(model, tokenizer, [p for _, p in chunk], max_length=max_length,
                                     keep_last=keep_last, token_ids=token_ids)
                batch = {h: s for (h, _), s in zip(chunk, scores, strict=True)}
                cache.put(key, kind, max_length, batch)
                known.update(batch)
        return Scored([known[h] for h in hashes], len(missing))
    finally:
        cache.close()
