"""What a long run shows while it works: progress bars with totals and an ETA on a terminal, one
line per step in a log file (`Log`), shared by the suite runner, `attractor-bench train` and the
OOD runs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Log:
    """Progress bars with totals on a terminal; one line per step in a log file."""

    def __init__(self, console: Console, progress: bool):
        self.console, self.enabled = console, progress
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not progress)
        self.plain = progress and not console.is_terminal  # no live bars in a log file: print lines instead

    def __enter__(self):
        return self.bar.__enter__() if self.enabled else None

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc) if self.enabled else None

    def line(self, text: str) -> None:
        if self.plain:
            self.console.print(text, highlight=False)

    def say(self, text: str) -> None:
        """A line shown on a terminal and in a log file alike (what the run will do)."""
        if self.enabled:
            self.console.print(text, highlight=False)
