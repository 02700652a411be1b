"""What the user sees: a rich progress bar on a terminal, one plain line per epoch otherwise,
nothing with --quiet; and the comparison table at the end of several runs."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from netdsl.train.loop import EpochRow


def _line(label: str, row: EpochRow, epochs: int) -> str:
    return (f"{label}  epoch {row.epoch}/{epochs}  train loss {row.train_loss:.4f}  "
            f"val loss {row.val_loss:.4f}  val acc {100 * row.val_acc:.2f}%  {row.seconds:.1f}s")


class Reporter:
    def __init__(self, mode: str) -> None:
        self.mode = mode  # "rich" | "plain" | "quiet"
        self._progress: Any = None
        self._task: Any = None

    @classmethod
    def choose(cls, quiet: bool, is_main: bool = True) -> "Reporter":
        if quiet or not is_main:
            return cls("quiet")
        return cls("rich" if sys.stdout.isatty() else "plain")

    def message(self, text: str) -> None:
        if self.mode != "quiet":
            print(text, flush=True)

    def start(self, label: str, epochs: int, done: int, samples: int) -> None:
        self._label, self._epochs, self._samples = label, epochs, samples
        if self.mode == "rich":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[last]}"), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(f"{label} epoch {done + 1}/{epochs}", total=samples, last="")

    def batch(self, done: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done)

    def epoch(self, row: EpochRow) -> None:
        if self.mode == "plain":
            print(_line(self._label, row, self._epochs), flush=True)
        elif self._progress is not None:
            self._progress.console.print(_line(self._label, row, self._epochs), highlight=False)
            nxt = min(row.epoch + 1, self._epochs)
            self._progress.update(self._task, completed=0, description=f"{self._label} epoch {nxt}/{self._epochs}",
                                  last=f"val loss {row.val_loss:.3f} acc {100 * row.val_acc:.1f}%")

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def on_batch(self) -> Any:
        return self.batch if self.mode == "rich" else None


@dataclass
class Summary:
    label: str
    spec_name: str
    epochs: int
    rows: Sequence[EpochRow]
    best_val_loss: float
    best_epoch: int
    status: str = "done"

    def cells(self) -> list[str]:
        if not self.rows:
            return [self.label, self.spec_name, "0"] + ["-"] * (len(HEADERS) - 4) + [self.status]
        last = self.rows[-1]
        tail = self.rows[-LAST:]  # validation loss swings from epoch to epoch; a mean steadies it
        return [self.label, self.spec_name, str(last.epoch), f"{last.train_loss:.4f}", f"{last.val_loss:.4f}",
                f"{100 * last.val_acc:.2f}", f"{sum(r.val_loss for r in tail) / len(tail):.4f}",
                f"{100 * sum(r.val_acc for r in tail) / len(tail):.2f}",
                f"{self.best_val_loss:.4f} (ep {self.best_epoch})",
                f"{sum(r.seconds for r in self.rows):.0f}", self.status]


LAST = 5
HEADERS = ["run", "spec", "epochs", "train loss", "val loss", "val acc %", f"val loss last-{LAST} mean",
           f"val acc % last-{LAST} mean", "best val loss", "time s", "status"]


def table_text(summaries: Sequence[Summary]) -> str:
    rows = [HEADERS] + [s.cells() for s in summaries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(rows[0]), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows[1:]])


def table_markdown(summaries: Sequence[Summary]) -> str:
    rows = [HEADERS, ["---"] * len(HEADERS)] + [s.cells() for s in summaries]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def print_table(reporter: Reporter, summaries: Sequence[Summary]) -> None:
    if reporter.mode == "quiet":
        return
    if reporter.mode == "rich":
        from rich.console import Console
        from rich.table import Table

        t = Table(title="comparison (final epoch; validation)")
        for h in HEADERS:
            t.add_column(h, justify="left" if h in ("run", "spec", "status") else "right")
        for s in summaries:
            t.add_row(*s.cells())
        Console().print(t)
    else:
        print(table_text(summaries), flush=True)
