"""The colourization trainer's display, the last line of a run, and the comparison table at the end
of several runs."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netdsl.tasks.colourize.loop import EpochRow
from netdsl.tasks.report import EpochProgress


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
        from rich.console import Console  # rich only on a terminal (the plain and quiet modes never need it)
        from rich.table import Table

        t = Table(title="comparison (final epoch; validation)")
        for h in HEADERS:
            t.add_column(h, justify="left" if h in ("run", "spec", "status") else "right")
        for s in summaries:
            t.add_row(*s.cells())
        Console().print(t)
    else:
        print(table_text(summaries), flush=True)
