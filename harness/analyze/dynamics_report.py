"""From loss-dynamics measurements to what a reader gets: every series as JSON, the figures (PNG +
PDF: Figure 4 losses and ratio, Figure 5 per-token correlation, Figure 6 representative tokens), a
short text summary, and the two loss curves in the results store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.analyze.loss_dynamics import DynamicsOptions, DynamicsRun, Measurement
from harness.analyze.token_stats import (
    TokenReductions,
    loss_ratio,
    per_token_reduction,
    shared_types,
    token_correlation,
    top_reductions,
)

JSON_NAME = "loss-dynamics.json"
SUMMARY_NAME = "summary.txt"
DEFINITIONS = {
    "loss": "mean cross-entropy (nats) over the loss tokens (response tokens and EOS; every labelled token with "
            "loss_on=all) of a fixed set of examples, in eval mode; the same examples at every measurement",
    "train_set": "a fixed seeded sample of the union of the training portions, drawn once before training "
                 "(default: as many examples as the validation portion)",
    "delta": "ΔL[k] = L[k-1] - L[k]: the reduction over training portion k (positive: the loss fell)",
    "ratio": "ΔL_train[k] / ΔL_val[k]; null and flagged in ratio_guarded when |ΔL_val[k]| < ratio_eps",
    "token_reduction": "r[k](t) = mean over the sample's loss positions whose target token is t of "
                       "(loss at measurement k-1 - loss at measurement k)",
    "spearman_rho": "Spearman ρ (average ranks) between r_train[k](t) and r_val[k](t) over the token types t that "
                    "occur at least min_count times in the training sample and in the validation portion",
    "representative": "the top_k token types (at least min_count occurrences in the training sample) with the "
                      "largest r_train over the first (early) and the last (late) training portion",
}


def analyse(measurements: Sequence[Measurement], options: DynamicsOptions,
            decode: Callable[[int], str]) -> dict[str, Any]:
    """Every series of the study, JSON-ready (index k: after k training portions; 0: before training)."""
    loss_train = [m.train.mean for m in measurements]
    loss_val = [m.validation.mean for m in measurements]
    delta_train: list[float | None] = [None]
    delta_val: list[float | None] = [None]
    ratio: list[float | None] = [None]
    guarded = [False]
    rho: list[float | None] = [None]
    train_red: list[TokenReductions] = []
    val_red: list[TokenReductions] = []
    n_types = 0
    for before, after in zip(measurements[:-1], measurements[1:], strict=True):
        dt, dv = before.train.mean - after.train.mean, before.validation.mean - after.validation.mean
        delta_train.append(dt)
        delta_val.append(dv)
        ratio.append(loss_ratio(dt, dv, options.ratio_eps))
        guarded.append(ratio[-1] is None)
        train_red.append(per_token_reduction(before.train, after.train))
        val_red.append(per_token_reduction(before.validation, after.validation))
        value, n_types = token_correlation(train_red[-1], val_red[-1], options.min_count)
        rho.append(value)
    # Counts are the same at every measurement (same examples), so the first portion's stand for all.
    types = sorted(set(train_red[0].counts) | set(val_red[0].counts)) if train_red else []
    in_rho = set(shared_types(train_red[0], val_red[0], options.min_count)) if train_red else set()

    def tokens(red: TokenReductions) -> list[dict[str, Any]]:
        return [{"token_id": t, "token": decode(t), "reduction": r, "count": n}
                for t, r, n in top_reductions(red, options.min_count, options.top_k)]

    return {
        "series": {"portion": [m.portion for m in measurements], "step": [m.step for m in measurements],
                   "tokens_seen": [m.tokens_seen for m in measurements], "loss_train": loss_train,
                   "loss_validation": loss_val, "delta_train": delta_train, "delta_validation": delta_val,
                   "ratio": ratio, "ratio_guarded": guarded, "spearman_rho": rho},
        "rho_token_types": n_types,
        "per_token": {
            "token_id": types,
            "token": [decode(t) for t in types],
            "train_count": [train_red[0].counts.get(t, 0) for t in types] if train_red else [],
            "validation_count": [val_red[0].counts.get(t, 0) for t in types] if val_red else [],
            "in_rho": [t in in_rho for t in types],
            # One list per training portion k = 1..P-1, aligned with token_id; null where t is absent.
            "train_reduction": [[red.reduction.get(t) for t in types] for red in train_red],
            "validation_reduction": [[red.reduction.get(t) for t in types] for red in val_red],
        },
        "representative": {"early": tokens(train_red[0]) if train_red else [],
                           "late": tokens(train_red[-1]) if train_red else []},
    }


def _first_last(values: Sequence[float | None]) -> tuple[tuple[int, float], tuple[int, float]] | None:
    known = [(k, v) for k, v in enumerate(values) if v is not None]
    return (known[0], known[-1]) if known else None


def _moved(name: str, values: Sequence[float | None], unit: str = "") -> str:
    ends = _first_last(values)
    if ends is None:
        return f"{name}: undefined at every portion"
    (k0, v0), (k1, v1) = ends
    if f"{v0:.2f}" == f"{v1:.2f}":
        return f"{name} stayed at {v0:.2f} (portions {k0} to {k1}){unit}"
    return f"{name} {'rose' if v1 > v0 else 'fell'} from {v0:.2f} (portion {k0}) to {v1:.2f} (portion {k1}){unit}"


def summary_text(result: dict[str, Any], options: DynamicsOptions) -> str:
    s = result["series"]
    guarded = [k for k, g in enumerate(s["ratio_guarded"]) if g and k > 0]
    parts = [_moved("ΔL_train/ΔL_val", s["ratio"])
             + (f" (null at portion(s) {', '.join(map(str, guarded))}: |ΔL_val| < {options.ratio_eps:g})"
                if guarded else ""),
             _moved("Spearman ρ of per-token reductions", s["spearman_rho"],
                    f" over {result['rho_token_types']} token types seen >= {options.min_count} times on both sides"),
             f"validation loss {s['loss_validation'][0]:.3f} -> {s['loss_validation'][-1]:.3f}, training-sample loss "
             f"{s['loss_train'][0]:.3f} -> {s['loss_train'][-1]:.3f}"]
    for stage in ("early", "late"):
        words = ", ".join(repr(t["token"]) for t in result["representative"][stage][:8]) or "none"
        parts.append(f"largest {stage} training-loss reductions: {words}")
    return "; ".join(parts) + "."


def write_outputs(run: DynamicsRun, options: DynamicsOptions, out_dir: Path, header: dict[str, Any]) -> dict[str, Any]:
    """Write the JSON, the summary and the figures into `out_dir`; returns the JSON's content."""
    from harness.analyze.dynamics_figures import correlation_chart, dynamics_chart, tokens_chart

    result = analyse(run.measurements, options, lambda t: run.tokenizer.decode([t]))
    split = run.split
    result = {**header, "options": asdict(options), "definitions": DEFINITIONS,
              "data": {"n_examples": run.n_examples, "n_prompt_too_long": run.n_prompt_too_long,
                       "training_portion_sizes": [len(p) for p in split.training],
                       "validation_portion_size": len(split.validation), "train_sample_size": len(split.sample),
                       "train_sample_tokens": int(run.measurements[0].train.token_ids.size),
                       "validation_tokens": int(run.measurements[0].validation.token_ids.size)},
              **result}
    result["summary"] = summary_text(result, options)
    out_dir = Path(out_dir)
    figures = [*dynamics_chart(result, out_dir / "loss-dynamics"), *correlation_chart(result, out_dir / "token-correlation"),
               *tokens_chart(result, out_dir / "representative-tokens")]
    result["figures"] = [p.name for p in figures]
    # Compact: with a real vocabulary the per-token lists hold hundreds of thousands of numbers.
    (out_dir / JSON_NAME).write_text(json.dumps(result, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / SUMMARY_NAME).write_text(result["summary"] + "\n", encoding="utf-8")
    return result


def record_curves(results_dir: Path, run_key: str, result: dict[str, Any]) -> None:
    """L_train and L_val at every measurement as the store's train/validation curves of `run_key`."""
    from harness.store import CurvePoint, ResultsStore

    s = result["series"]
    points = [CurvePoint(step, split, loss, tokens)
              for step, tokens, lt, lv in zip(s["step"], s["tokens_seen"], s["loss_train"], s["loss_validation"],
                                              strict=True)
              for split, loss in (("train", lt), ("validation", lv))]
    with ResultsStore.open(results_dir) as store:
        store.add_curve_points(run_key, points)
