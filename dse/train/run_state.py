"""What a ``dse train`` epoch checkpoint (``last.pt``) restores, and the best-on-val weights.

Keeping the best epoch: after each epoch the run scores the model on val by its mean anytime
accuracy (the mean over exits of each exit's own val accuracy). Our choice of score: it does not
depend on the thresholds, which are re-tuned after training, and it rewards every exit, not only
the ones the configured thresholds happen to use. Ties go to the later epoch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dse.train.options import TrainOptions
from dse.train.techniques import HdkdTraining
from dse.yamlio import to_plain


class RunState:
    """What an epoch checkpoint restores: weights, optimizer, schedule, RNGs, history."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, o: TrainOptions,
                 gen: torch.Generator) -> None:
        self.model, self.opt, self.o, self.gen = model, opt, o, gen
        self.sched: Any = None
        self.epoch, self.history, self.pseudo = 0, [], None
        #: the best epoch so far: {"epoch", "score", "state"} (state: CPU copies of the weights)
        self.best: dict[str, Any] | None = None

    def consider(self, epoch: int, score: float | None) -> bool:
        """Keep the current weights as the best when ``score`` is at least the best so far."""
        if score is None or (self.best is not None and score < self.best["score"]):
            return False
        self.best = {"epoch": epoch, "score": float(score),
                     "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        return True

    def restore_best(self) -> dict[str, Any] | None:
        """Load the best epoch's weights into the model; (epoch, score) of what is loaded."""
        if self.best is None:
            return None
        if self.best["epoch"] != self.epoch:
            self.model.load_state_dict(self.best["state"])
        return {"epoch": self.best["epoch"], "val_mean_anytime_accuracy": self.best["score"]}

    def state_dict(self, hdkd: HdkdTraining | None) -> dict[str, Any]:
        return {"epoch": self.epoch, "history": to_plain(self.history),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                "pseudo": self.pseudo, "best": self.best, "hdkd": hdkd.state_dict() if hdkd is not None else None}

    def load_state_dict(self, state: dict[str, Any], hdkd: HdkdTraining | None) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.history, self.pseudo = state["epoch"], list(state["history"]), state["pseudo"]
        self.best = state.get("best")
        if hdkd is not None:
            hdkd.load_state_dict(state["hdkd"])
