"""What the user sees: a rich progress bar on a terminal, one plain line per epoch otherwise,
nothing with --quiet; and the comparison table at the end of several runs."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # loop imports torch, and the detection CLI module imports this one on import
    from netdsl.train.loop import EpochRow


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


class Reporter(EpochProgress["EpochRow"]):
    """The colourization trainer's display: the bar notes the last validation loss and accuracy."""

    def line(self, row: EpochRow) -> str:
        return (f"{self._label}  epoch {row.epoch}/{self._epochs}  train loss {row.train_loss:.4f}  "
                f"val loss {row.val_loss:.4f}  val acc {100 * row.val_acc:.2f}%  {row.seconds:.1f}s")

    def epoch_note(self, row: EpochRow) -> str:
        return f"val loss {row.val_loss:.3f} acc {100 * row.val_acc:.1f}%"


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


def done_line(s: Summary, where: object) -> str:
    """The run's last line: the last epoch and the best one (best.pt, what samples.png shows);
    validation swings from epoch to epoch, so the two can differ by several points."""
    last, best = s.rows[-1], next((r for r in s.rows if r.epoch == s.best_epoch), None)
    text = (f"done: val loss {last.val_loss:.4f}, val pixel accuracy {100 * last.val_acc:.2f}% at the last "
            f"epoch ({last.epoch})")
    if best is last:
        text += ", the best (best.pt)"
    elif best is not None:
        text += (f"; best: val loss {best.val_loss:.4f}, val pixel accuracy {100 * best.val_acc:.2f}% at epoch "
                 f"{best.epoch} (best.pt, shown in samples.png)")
    return f"{text} -> {where}"


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
