"""Read the 1-10 rating out of a judge's text, as FastChat does, and say when there is none.

FastChat takes the first `[[x]]`, else the first `[x]`. Checked against 160 real GPT-4 judgments:
where a judgment holds several `[[x]]` the first is the rating of the answer and the later ones
rate hypothetical improvements ("... would earn [[10]]"), so first-wins is kept. Unlike FastChat,
a value outside 1-10 (an `[[11]]`, or `[0]` that the fallback caught in an answer's `array[0]`)
is not a rating: it is reported as missing (None), never turned into a score.
"""

from __future__ import annotations

import math
import re

RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")
LOW, HIGH = 1.0, 10.0


def parse_rating(judgment: str) -> float | None:
    """The rating in `judgment`, or None (missing) when it has no rating on the 1-10 scale."""
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    if match is None:
        return None
    value = float(match.group(1))
    if not math.isfinite(value) or not LOW <= value <= HIGH:
        return None
    return value


def median(values: list[float]) -> float | None:
    """The median of the ratings a question got over judge repeats; None when all were missing."""
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
