"""What the user sees while a task trains: a rich progress bar on a terminal, one plain line per
epoch otherwise, nothing with --quiet. Each task says what its epoch line reads."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar


class _Row(Protocol):
    epoch: int  # all the bar needs of a trainer's epoch row: which epoch comes next


RowT = TypeVar("RowT", bound=_Row)
ProgressT = TypeVar("ProgressT", bound="EpochProgress[Any]")


class EpochProgress(Generic[RowT]):
    """A trainer's display: a rich bar on a terminal, one plain line per epoch otherwise, nothing
    when quiet. Subclasses say what the epoch line reads and what the bar's note shows."""

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "rich" | "plain" | "quiet"
        self._bar: Any = None
        self._task: Any = None

    @classmethod
    def choose(cls: type[ProgressT], quiet: bool, is_main: bool = True) -> ProgressT:
        if quiet or not is_main:
            return cls("quiet")
        return cls("rich" if sys.stdout.isatty() else "plain")

    def line(self, row: RowT) -> str:
        raise NotImplementedError

    def batch_note(self, *state: Any) -> str | None:
        """The bar's note after a batch (`state`: what the trainer passes after the count); None keeps it."""
        return None

    def epoch_note(self, row: RowT) -> str | None:
        """The bar's note after an epoch; None keeps it."""
        return None

    def message(self, text: str) -> None:
        if self.mode != "quiet":
            print(text, flush=True)

    def start(self, label: str, epochs: int, done: int, total: int) -> None:
        self._label, self._epochs = label, epochs
        if self.mode == "rich":
            # rich only on a terminal: the plain and quiet modes never need it
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[note]}"), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self._description(done + 1), total=total, note="")

    def batch(self, done: int, *state: Any) -> None:
        if self._bar is not None:
            self._update(self.batch_note(*state), completed=done)

    def epoch(self, row: RowT) -> None:
        if self.mode == "plain":
            print(self.line(row), flush=True)
        elif self._bar is not None:
            self._bar.console.print(self.line(row), highlight=False)
            nxt = min(row.epoch + 1, self._epochs)
            self._update(self.epoch_note(row), completed=0, description=self._description(nxt))

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    @property
    def on_batch(self) -> Callable[..., None] | None:
        return self.batch if self.mode == "rich" else None

    def _description(self, epoch: int) -> str:
        return f"{self._label} epoch {epoch}/{self._epochs}"

    def _update(self, note: str | None, **fields: Any) -> None:
        if note is not None:
            fields["note"] = note
        self._bar.update(self._task, **fields)
