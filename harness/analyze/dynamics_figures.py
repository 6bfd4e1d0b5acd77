"""The loss-dynamics figures from the study's JSON: Figure 4 (losses, reductions and their ratio per
portion), Figure 5 (per-token correlation per portion, and the first and last portions' scatter) and
Figure 6 (the token types whose training loss fell most, early and late).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report.figures import new_figure, save


def dynamics_chart(result: dict[str, Any], out_base: Path) -> list[Path]:
    s = result["series"]
    portions = s["portion"]
    fig = new_figure(13, 3.6)
    losses, deltas, ratios = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    losses.plot(portions, s["loss_train"], marker="o", label="training sample")
    losses.plot(portions, s["loss_validation"], marker="o", label="validation portion")
    losses.set_title("Mean token loss")
    losses.set_ylabel("loss (nats)")
    losses.legend(fontsize=8)
    later = portions[1:]
    deltas.plot(later, s["delta_train"][1:], marker="o", label="ΔL_train")
    deltas.plot(later, s["delta_validation"][1:], marker="o", label="ΔL_val")
    deltas.axhline(0, color="#999999", linewidth=0.8)
    deltas.set_title("Loss reduction per portion")
    deltas.legend(fontsize=8)
    shown = [(k, r) for k, r in zip(later, s["ratio"][1:], strict=True) if r is not None]
    ratios.plot([k for k, _ in shown], [r for _, r in shown], marker="o", color="#C44E52")
    for k, flagged in zip(later, s["ratio_guarded"][1:], strict=True):
        if flagged:
            ratios.axvline(k, color="#dddddd", linestyle=":")  # ΔL_val ≈ 0: no ratio at this portion
    ratios.axhline(1, color="#999999", linewidth=0.8, linestyle="--")
    ratios.set_title("ΔL_train / ΔL_val")
    for ax in (losses, deltas, ratios):
        ax.set_xlabel("training portions seen")
        ax.set_xticks(portions)
    return save(fig, out_base)


def correlation_chart(result: dict[str, Any], out_base: Path) -> list[Path]:
    s, per_token = result["series"], result["per_token"]
    fig = new_figure(10, 3.8)
    rho, scatter = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    shown = [(k, r) for k, r in zip(s["portion"], s["spearman_rho"], strict=True) if r is not None]
    rho.plot([k for k, _ in shown], [r for _, r in shown], marker="o")
    rho.set_ylim(-1.05, 1.05)
    rho.axhline(0, color="#999999", linewidth=0.8)
    rho.set_xticks(s["portion"][1:])
    rho.set_xlabel("training portion")
    rho.set_ylabel("Spearman ρ")
    rho.set_title(f"Per-token reduction: train vs. validation ({result['rho_token_types']} types)")
    inside = [i for i, flag in enumerate(per_token["in_rho"]) if flag]
    n = len(per_token["train_reduction"])
    for k, label in ((0, "portion 1"), (n - 1, f"portion {n}")) if n else ():
        scatter.scatter([per_token["train_reduction"][k][i] for i in inside],
                        [per_token["validation_reduction"][k][i] for i in inside], s=10, alpha=0.6, label=label)
    scatter.axhline(0, color="#999999", linewidth=0.8)
    scatter.axvline(0, color="#999999", linewidth=0.8)
    scatter.set_xlabel("reduction on the training sample")
    scatter.set_ylabel("reduction on the validation portion")
    scatter.set_title("Per token type")
    if inside and n:
        scatter.legend(fontsize=8)
    return save(fig, out_base)


def tokens_chart(result: dict[str, Any], out_base: Path) -> list[Path]:
    stages = result["representative"]
    rows = max(len(stages["early"]), len(stages["late"]), 1)
    fig = new_figure(10, 1.2 + 0.28 * rows)
    for index, (stage, title) in enumerate((("early", "after the first portion"), ("late", "after the last portion"))):
        ax = fig.add_subplot(1, 2, index + 1)
        entries = stages[stage][::-1]  # largest on top
        ax.barh(range(len(entries)), [e["reduction"] for e in entries], color="#4C72B0" if stage == "early" else "#55A868")
        ax.set_yticks(range(len(entries)), [repr(e["token"]) for e in entries], fontsize=7)
        ax.set_xlabel("mean training-loss reduction (nats)")
        ax.set_title(f"Largest reductions {title}")
    return save(fig, out_base)
