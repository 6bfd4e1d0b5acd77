"""Multiple-comparison corrections for the p-values of one table: Holm (family-wise error, the
default) and Benjamini-Hochberg (false discovery rate). Both return adjusted p-values, so a
result is significant when its adjusted p-value is <= alpha, in the input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.stats.tests import InvalidSample

CORRECTIONS: tuple[str, ...] = ("holm", "bh", "none")


def _p_array(p_values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise InvalidSample(f"{name}: give a flat list of p-values (got shape {p.shape})")
    if np.any(np.isnan(p)):
        raise InvalidSample(f"{name}: a p-value is NaN (index {int(np.flatnonzero(np.isnan(p))[0])}); "
                            "leave untested cells out of the family instead")
    if np.any((p < 0) | (p > 1)):
        raise InvalidSample(f"{name}: p-values must lie in [0, 1] (got {p[(p < 0) | (p > 1)][0]})")
    return p


def holm(p_values: Sequence[float] | np.ndarray) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i + 1), made monotone, capped at 1."""
    p = _p_array(p_values, "holm")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> list[float]:
    """Benjamini-Hochberg step-up adjustment: min over j >= i of p_(j) * m / j, capped at 1."""
    p = _p_array(p_values, "benjamini_hochberg")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def adjust(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> list[float]:
    """Adjusted p-values by `method`: holm, bh (Benjamini-Hochberg) or none."""
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "none":
        return _p_array(p_values, "adjust").tolist()
    raise InvalidSample(f"unknown correction {method!r}; choose one of: {', '.join(CORRECTIONS)}")
