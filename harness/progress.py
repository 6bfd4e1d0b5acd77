"""Progress reporting for long work: a rich bar, or nothing in quiet mode (CI)."""

from __future__ import annotations

import re
from typing import Any, Protocol


class Progress(Protocol):
    def start(self, description: str, total: int, completed: int = 0) -> None: ...

    def update(self, completed: int, **fields: Any) -> None: ...

    def finish(self) -> None: ...


class QuietProgress:
    def start(self, description: str, total: int, completed: int = 0) -> None:
        pass

    def update(self, completed: int, **fields: Any) -> None:
        pass

    def finish(self) -> None:
        pass


class RichProgress:
    """A bar with the fields the caller reports (e.g. loss and tokens/s) and an ETA."""

    def __init__(self, fields: str = "") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichBar

        self._bar = RichBar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn(fields), TimeRemainingColumn(), transient=False)
        self._task: Any = None
        # Every field the format names must exist before the first update.
        self._defaults = {name: "-" for name in re.findall(r"task\.fields\[(\w+)\]", fields)}

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, completed=completed, **self._defaults)

    def update(self, completed: int, **fields: Any) -> None:
        self._bar.update(self._task, completed=completed, **fields)

    def finish(self) -> None:
        self._bar.stop()


def make_progress(quiet: bool, fields: str = "") -> Progress:
    return QuietProgress() if quiet else RichProgress(fields)
