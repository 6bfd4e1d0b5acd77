"""The data-size sweep's analysis side: what a run's manifest records about its sweep point.

Which rows a sweep makes (vanilla@0.25, ...) is decided in one place, harness.pipeline.rows;
the names below are kept for the figure code and for readers of the sweep.
"""

from __future__ import annotations

from typing import Any

from harness.pipeline.rows import Row, find_row, report_experiment, row_data, selected, size_label
from harness.pipeline.rows import experiment_rows as sweep_rows

SweepRow = Row

__all__ = ["Row", "SweepRow", "find_row", "report_experiment", "row_data", "selected", "size_label",
           "sweep_provenance", "sweep_rows"]


def sweep_provenance(row: Row, n_records: int) -> dict[str, Any]:
    """What a run's manifest records about its sweep point (the curve's x comes from the config)."""
    if row.point is None:
        return {}
    return {"sweep": {"row": row.entry.row_name, "method_row": row.source.row_name, row.kind: row.point,
                      "data": {"data_fraction": row.experiment.data.data_fraction,
                               "max_samples": row.experiment.data.max_samples},
                      "n_instruction_records": n_records}}
