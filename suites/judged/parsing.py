"""Read the 1-10 rating out of a judge's text, in one of two modes, and say when there is none.

`final` (the default): the judge's final verdict. Code the judgment quotes (fenced blocks, inline
`code`) is not read, so an answer cannot set its own score by containing `[[8]]`. An explicit
verdict (`Rating: [[x]]`, `Score: [[x]]`) wins, the last one if the judge wrote several; otherwise
the last `[[x]]` whose sentence does not speak of a hypothetical or improved answer ("a revised
answer would earn [[10]]", "could be improved, earning [[10]]"); if every one does, the last one.
Without any `[[x]]`, the last `Rating: [x]` or `[x]` alone on a line counts. A value outside 1-10 is not a rating.
Checked against 160 real GPT-4 judgments (tests/test_judged_realdata.py): it agrees with FastChat
wherever FastChat's number is on the scale.

`fastchat`: FastChat's `run_judge_single` exactly, quirks included: the first `[[x]]`, else the
first `[x]` anywhere (so `array[0]` in quoted code is a rating of 0), read with `ast.literal_eval`,
no range check. No match is FastChat's -1, which its `show_result` drops: here it is missing (None).
"""

from __future__ import annotations

import ast
import math
import re
from typing import Literal

RatingMode = Literal["final", "fastchat"]
RATING_MODES: tuple[str, ...] = ("final", "fastchat")

RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat's one_score_pattern
RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")  # FastChat's one_score_pattern_backup
LOW, HIGH = 1.0, 10.0

_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
_EXPLICIT = re.compile(r"\b(?:rating|score)\s*[:=]\s*\[\[(\d+\.?\d*)\]\]", re.I)
# Without any `[[x]]`: a `Rating: [x]`, or an `[x]` alone on its line (FastChat's fallback, minus `array[0]`).
_SINGLE = re.compile(r"\b(?:rating|score)\s*[:=]\s*\[(\d+\.?\d*)\]|^[ \t]*\[(\d+\.?\d*)\][ \t]*$", re.I | re.M)
_HYPOTHETICAL = re.compile(
    r"\b(?:could|might|if|revised|improved|improvements?|hypothetical(?:ly)?|ideal|would (?:earn|receive|get|deserve|"
    r"merit|score|warrant|result|be rated|have))\b|\bresulting in\b", re.I)
_SENTENCE_END = re.compile(r"[.!?;](?=\s)|\n")


def parse_rating(judgment: str, mode: RatingMode | str = "final") -> float | None:
    """The rating in `judgment` under `mode`, or None (missing)."""
    if mode == "fastchat":
        return fastchat_rating(judgment)
    if mode != "final":
        raise ValueError(f"unknown rating mode {mode!r}; use one of {', '.join(RATING_MODES)}")
    return final_rating(judgment)


def fastchat_rating(judgment: str) -> float | None:
    """FastChat's rating: first `[[x]]`, else first `[x]`, any value; None where FastChat writes -1."""
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    if match is None:
        return None
    try:
        value = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):  # "07": FastChat's judge thread raises; no rating either way
        return None
    return float(value)


def final_rating(judgment: str) -> float | None:
    """The judge's final verdict on the 1-10 scale (see the module docstring), or None."""
    text = _CODE.sub(" ", judgment)
    explicit = _EXPLICIT.findall(text)
    if explicit:
        return _on_scale(explicit[-1])
    candidates = list(RATING.finditer(text))
    if not candidates:
        single = [m.group(1) or m.group(2) for m in _SINGLE.finditer(text)]
        return _on_scale(single[-1]) if single else None
    plain = [m for m in candidates if not _HYPOTHETICAL.search(_sentence_of(text, m.start(), m.end()))]
    return _on_scale((plain or candidates)[-1].group(1))


def _sentence_of(text: str, start: int, end: int) -> str:
    before = [m.end() for m in _SENTENCE_END.finditer(text, 0, start)]
    after = _SENTENCE_END.search(text, end)
    return text[before[-1] if before else 0:after.start() if after else len(text)]


def _on_scale(number: str) -> float | None:
    value = float(number)
    return value if math.isfinite(value) and LOW <= value <= HIGH else None


def median(values: list[float]) -> float | None:
    """The median of the ratings a question got over judge repeats; None when all were missing."""
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
