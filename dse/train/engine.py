"""The training engine: what every training loop of dse shares.

Four loops train something: the backbone (:mod:`dse.train.backbone`), the exit branches of a
trial on cached features (:mod:`dse.train.proxy`), a chosen configuration (:mod:`dse.train.full`,
``dse train``) and the exit classifiers of a fine-tuning (:mod:`dse.finetune.classifiers`). They
differ in what they train and on which data. They share, from here:

- the optimizer factory (:func:`make_optimizer`): one table from an optimizer name (the names
  declared once, in :data:`dse.design.OPTIMIZERS`) to its constructor, and the defaults below;
- the learning-rate schedule factory (:func:`make_schedule`), stepped once per optimizer step;
- the order of the data (:func:`epoch_batches`, :func:`minibatches`) and one optimizer step
  (:func:`optimizer_step`);
- device placement (:func:`resolve_device`, :func:`batch_to`);
- progress on stderr (:func:`progress_bar`, :func:`log_stderr`) and the per-epoch log line of
  ``dse train`` (:class:`EpochLog`).

Every helper keeps the order of random-number draws and of parameters it is given, so a loop
that uses it trains bit-identically to one that inlines it.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from dse.design import OPTIMIZERS
from dse.errors import ConfigError

Log = Callable[[str], None]

# ------------------------------------------------------------------------------- defaults

#: SGD momentum everywhere in dse, Nesterov style (He et al. 2016's CIFAR recipe; MSDNet and
#: IMTA use 0.9 too). ``momentum=0`` gives plain SGD.
SGD_MOMENTUM = 0.9
#: weight decay when a whole network trains (backbone training, joint ``dse train``): the 5e-4
#: of He et al.'s CIFAR ResNets
NETWORK_WEIGHT_DECAY = 5e-4
#: weight decay when only exit classifiers train (proxy, frozen ``dse train``, fine-tuning):
#: none, a branch is small and trains for a few hundred steps
EXIT_WEIGHT_DECAY = 0.0
#: peak learning rate of SGD on a whole network (backbone training, joint ``dse train``)
NETWORK_SGD_LR = 0.05
#: peak learning rate of Adam on a whole network (backbone training with ``--optimizer adam``)
NETWORK_ADAM_LR = 1e-3
#: learning-rate schedules: cosine decay to 0 over the run (Loshchilov & Hutter 2017), a /10
#: step at 50% and 75% of the run, or a constant rate
SCHEDULES = ("cosine", "step", "constant")

# ------------------------------------------------------------------------------ optimizers


def _sgd(params: list, lr: float, weight_decay: float, momentum: float,
         **extra: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=momentum > 0, **extra)


def _adam(params: list, lr: float, weight_decay: float, momentum: float,
          **extra: Any) -> torch.optim.Optimizer:
    del momentum  # Adam's moments are its own (betas left at torch's 0.9, 0.999)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)


#: optimizer name -> constructor(params, lr, weight_decay, momentum, **torch options)
OPTIMIZER_TABLE: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": _adam, "sgd": _sgd}


def check_optimizer(name: Any, what: str = "optimizer") -> str:
    """``name`` when it is a known optimizer; else a ConfigError naming ``what`` and the choices."""
    if name not in OPTIMIZER_TABLE:
        raise ConfigError(f"{what} must be {' or '.join(OPTIMIZERS)}, got {name!r}")
    return name


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float,
                   weight_decay: float = EXIT_WEIGHT_DECAY, momentum: float = SGD_MOMENTUM,
                   fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params`` (their order is kept: it is the param-group order).

    ``momentum`` applies to SGD only (Nesterov when > 0). ``fused``: torch's fused kernel where
    this torch and device have one, else the plain implementation (proxy training: a branch has
    few small tensors, so per-tensor optimizer overhead dominates a step).
    """
    build = OPTIMIZER_TABLE[check_optimizer(name)]
    params = list(params)
    if fused:
        try:
            return build(params, lr, weight_decay, momentum, fused=True)
        except (RuntimeError, ValueError, TypeError):  # older torch: no fused kernel here
            pass
    return build(params, lr, weight_decay, momentum)


# ------------------------------------------------------------------------------- schedules


def make_schedule(opt: torch.optim.Optimizer, name: str,
                  total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule over ``total_steps`` optimizer steps (one of :data:`SCHEDULES`)."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total_steps, 1))
    if name == "step":
        milestones = sorted({max(1, int(total_steps * 0.5)), max(1, int(total_steps * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    if name == "constant":  # factor 1: the rate is left exactly as given
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")


def current_lr(opt: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group (all groups share it in dse)."""
    return opt.param_groups[0]["lr"]


# ------------------------------------------------------------------- data order and a step


def epoch_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """One pass over ``n`` samples in a fresh random order; the last batch may be smaller.

    The permutation is drawn from ``gen`` when the first batch is asked for.
    """
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def minibatches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless index batches: a fresh permutation per pass, each batch of ``min(batch_size, n)``."""
    size = min(batch_size, n)
    perm, pos = torch.randperm(n, generator=gen), 0
    while True:
        if pos + size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos:pos + size]
        pos += size


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor,
                   schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
    """Clear the gradients, back-propagate ``loss``, step the optimizer, then the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if schedule is not None:
        schedule.step()


# ------------------------------------------------------------------------ device placement


def resolve_device(device: torch.device | str) -> torch.device:
    """``device`` as a :class:`torch.device` (``auto`` is resolved by :mod:`dse.device`)."""
    return torch.device(device)


def batch_to(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors of one batch on ``device``, moved in the order given."""
    return tuple(t.to(device) for t in tensors)


# ------------------------------------------------------------------------ progress and logs


def log_stderr(msg: str) -> None:
    """One line on stderr that does not tear an active progress bar (tqdm redraws it below)."""
    tqdm.write(msg, file=sys.stderr)
    sys.stderr.flush()


def progress_bar(total: int, desc: str, *, enabled: bool | None, leave: bool, initial: int = 0,
                 unit: str = "step") -> tqdm:
    """A tqdm bar on stderr. ``enabled``: None shows it only on a terminal, False never.

    ``leave``: keep the finished bar on screen (``dse train``) or erase it (a step inside a
    larger command, such as training the backbone a search needs).
    """
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, leave=leave,
                disable=None if enabled is None else not enabled)


def epoch_line(epoch: int, epochs: int, loss: float, val_accuracy: float, lr: float,
               seconds: float) -> str:
    """``epoch 3/30  loss 0.412  val acc 97.2%  lr 0.00103  12.3 s`` (``val_accuracy`` in
    percent; ``seconds`` this epoch's wall time)."""
    return (f"epoch {epoch}/{epochs}  loss {loss:.3f}  val acc {val_accuracy:.1f}%  "
            f"lr {lr:.3g}  {seconds:.1f} s")


class EpochLog:
    """Per-epoch callback: logs one :func:`epoch_line` from a training record.

    A record holds ``epoch``, ``train_loss``, ``lr``, ``val`` (with ``accuracy``) and ``seconds``
    (wall time since the run started, a resumed run included); the line shows the epoch's own
    time, from the previous record's ``seconds`` (``start_seconds`` for the first).
    """

    def __init__(self, log: Log, epochs: int, start_seconds: float = 0.0) -> None:
        self.log, self.epochs, self.last_seconds = log, epochs, start_seconds

    def __call__(self, record: dict[str, Any]) -> None:
        seconds = record["seconds"] - self.last_seconds
        self.last_seconds = record["seconds"]
        self.log(epoch_line(record["epoch"], self.epochs, record["train_loss"],
                            record["val"]["accuracy"], record["lr"], seconds))
