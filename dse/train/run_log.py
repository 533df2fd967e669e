"""Per-epoch records of ``dse train`` on disk: ``epochs.csv`` in the output folder, and
TensorBoard event files in ``<out>/tensorboard/`` when ``torch.utils.tensorboard`` and the
``tensorboard`` package are installed (silently skipped otherwise: dse does not depend on it).

The CSV is rewritten from the whole history after every epoch, so a resumed run's file holds
every epoch once. Accuracy in percent, MACs as counts, time in seconds since the run started.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

EPOCHS_CSV = "epochs.csv"
TENSORBOARD_DIR = "tensorboard"


def epoch_row(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a training record (a history entry of
    :func:`dse.train.full_job.train_epochs`)."""
    val = record["val"]
    row = {"epoch": record["epoch"], "train_loss": record["train_loss"], "lr": record["lr"],
           "seconds": record["seconds"], "val_accuracy": val["accuracy"],
           "val_mean_anytime_accuracy": val["mean_anytime_accuracy"],
           "val_expected_macs": val["expected_macs"]}
    for n, acc in enumerate(val["per_exit_accuracy"]):
        row[f"val_exit{n + 1}_accuracy"] = acc
    for n, frac in enumerate(val["exit_fractions"]):
        row[f"val_exit{n + 1}_fraction"] = frac
    return row


def write_epochs_csv(path: str | os.PathLike, history: Sequence[dict[str, Any]]) -> Path:
    """Write every record of ``history`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    rows = [epoch_row(r) for r in history]
    columns = list(rows[0]) if rows else ["epoch"]
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


class TensorBoardLog:
    """Scalars of each epoch record for TensorBoard; a no-op when it is not installed."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.writer = None
        try:  # optional and heavy: only when installed, and only when a run starts
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's module needs the tensorboard package
            return
        self.writer = SummaryWriter(log_dir=str(folder))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def __call__(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in epoch_row(record).items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
