"""The training engine: optimizer table and defaults, schedules, data order, one step, progress
and the per-epoch log line."""
from __future__ import annotations

import io
import math
import re

import pytest
import torch

from dse.design import OPTIMIZERS
from dse.errors import ConfigError
from dse.train import engine


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]


def test_the_optimizer_table_holds_exactly_the_configurable_names():
    assert set(engine.OPTIMIZER_TABLE) == set(OPTIMIZERS)
    for name in OPTIMIZERS:
        assert isinstance(engine.make_optimizer(name, _params(), lr=0.1), torch.optim.Optimizer)


@pytest.mark.parametrize("name", ["rmsprop", "SGD", "", None])
def test_an_unknown_optimizer_is_a_config_error_naming_the_choices(name):
    with pytest.raises(ConfigError, match=r"optimizer must be adam or sgd, got "):
        engine.make_optimizer(name, _params(), lr=0.1)
    with pytest.raises(ConfigError, match=r"^--optimizer must be adam or sgd, got 'x'$"):
        engine.check_optimizer("x", "--optimizer")


def test_optimizer_defaults_and_parameter_order():
    params = _params()
    sgd = engine.make_optimizer("sgd", iter(params), lr=0.05)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.05, engine.SGD_MOMENTUM, True, engine.EXIT_WEIGHT_DECAY)
    assert group["params"] == params  # order kept: it is the optimizer state's order
    plain = engine.make_optimizer("sgd", params, lr=0.05, momentum=0.0, weight_decay=5e-4)
    assert (plain.param_groups[0]["nesterov"], plain.param_groups[0]["weight_decay"]) == (False, 5e-4)
    adam = engine.make_optimizer("adam", params, lr=1e-3, weight_decay=1e-4)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_request_builds_the_same_optimizer_kind(name):
    opt = engine.make_optimizer(name, _params(), lr=0.01, fused=True)
    assert type(opt) is type(engine.make_optimizer(name, _params(), lr=0.01))


def _lrs(name: str, total: int) -> list[float]:
    opt = torch.optim.SGD(_params(), lr=0.8)
    sched = engine.make_schedule(opt, name, total)
    out = []
    for _ in range(total):
        out.append(engine.current_lr(opt))
        opt.step()
        sched.step()
    return out + [engine.current_lr(opt)]


def test_schedules():
    cosine = _lrs("cosine", 8)
    assert cosine[0] == 0.8 and cosine[4] == pytest.approx(0.4) and cosine[-1] == pytest.approx(0.0)
    step = _lrs("step", 8)  # /10 at 50% and 75% of the steps
    assert step[:4] == [0.8] * 4 and step[4] == pytest.approx(0.08) and step[6] == pytest.approx(0.008)
    assert _lrs("constant", 5) == [0.8] * 6  # exactly the given rate, every step
    with pytest.raises(ConfigError, match="schedule must be one of cosine, step, constant"):
        engine.make_schedule(torch.optim.SGD(_params(), lr=0.1), "linear", 5)


def test_epoch_batches_cover_the_split_once_in_the_generators_order():
    batches = list(engine.epoch_batches(10, 4, torch.Generator().manual_seed(3)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), torch.randperm(10, generator=torch.Generator().manual_seed(3)))


def test_minibatches_cover_each_pass_without_repeats():
    gen = torch.Generator().manual_seed(0)
    it = engine.minibatches(10, 4, gen)
    first_pass = torch.cat([next(it), next(it)])
    assert len(set(first_pass.tolist())) == 8
    assert next(it).shape == (4,)  # a new pass starts: batches always have batch_size rows
    assert next(engine.minibatches(3, 8, gen)).shape == (3,)


def test_optimizer_step_is_zero_grad_backward_step_then_schedule():
    def run(use_engine: bool) -> list[torch.Tensor]:
        params = _params(1)
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3)
        for _ in range(3):
            loss = (params[0].sum() - params[1].prod()) ** 2
            if use_engine:
                engine.optimizer_step(opt, loss, sched)
            else:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        return [p.detach().clone() for p in params]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False)))


def test_batch_to_keeps_order_and_places_tensors():
    a, b = engine.batch_to(engine.resolve_device("cpu"), torch.zeros(2), torch.ones(3))
    assert a.shape == (2,) and b.shape == (3,) and a.device.type == "cpu"


@pytest.mark.parametrize("leave", [True, False])
def test_progress_bar_stays_on_stderr_only_when_asked(monkeypatch, leave):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    with engine.progress_bar(4, "dse train", enabled=True, leave=leave) as bar:
        bar.update(4)
    text = err.getvalue()
    assert "dse train" in text
    assert text.endswith("\n") is leave and ("4/4" in text.rsplit("\r", 1)[-1]) is leave
    err.truncate(0)
    with engine.progress_bar(4, "hidden", enabled=False, leave=True) as bar:
        bar.update(4)
    assert "hidden" not in err.getvalue()


def test_epoch_line_and_the_per_epoch_callback():
    assert engine.epoch_line(3, 30, 0.41234, 97.21, 0.00103, 12.34) == \
        "epoch 3/30  loss 0.412  val acc 97.2%  lr 0.00103  12.3 s"
    lines: list[str] = []
    log = engine.EpochLog(lines.append, 2, start_seconds=1.0)
    for epoch, seconds in ((1, 3.5), (2, 4.0)):
        log({"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.05 * math.cos(epoch),
             "val": {"accuracy": 50.0 + 10.0 * epoch}, "seconds": seconds})
    assert lines[0] == "epoch 1/2  loss 1.000  val acc 60.0%  lr 0.027  2.5 s"  # 3.5 - 1.0
    assert re.fullmatch(r"epoch 2/2  loss 0\.500  val acc 70\.0%  lr -0\.0208  0\.5 s", lines[1])


def test_log_stderr_writes_one_line(capsys):
    engine.log_stderr("hello")
    assert capsys.readouterr().err == "hello\n"
