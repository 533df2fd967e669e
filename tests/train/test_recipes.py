"""IMTA's two-phase recipe (``dse train --recipe imta``): the phase switch and what each trains."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dse.cli import cli
from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, save_config
from dse.data import load_dataset
from dse.errors import ConfigError
from dse.train.backbone import save_backbone, train_backbone
from dse.train.losses import LossSpec, compute_loss
from dse.train.model_file import load_model
from dse.train.options import TrainOptions, resolve
from dse.train.recipes import ImtaPhases, imta_configs, imta_options, train_imta

torch.set_num_threads(1)


def make_config(labels: str = "ground_truth") -> RunConfig:
    return RunConfig(
        backbone="digits-resnet", dataset="digits",
        exits=ExitDesign(2, "pareto", None, (2, 4), "pool", ()),
        training=TrainingSpec(loss=LossSpec("eenet", {"lam": 1.2}), labels=labels, lr=0.03,
                              batch_size=256),
        policy=ExitPolicy("maxprob", (0.9,)))


def test_phase_switch_configs_and_options():
    phases = ImtaPhases(epochs1=3, epochs2=2, lr1=0.1, lr2=0.01, alpha=0.8, temperature=2.0)
    c1, c2 = imta_configs(make_config(), phases)
    assert c1.training.loss == LossSpec("ce", {"weights": "uniform"}, False)
    assert c2.training.loss == LossSpec("kd", {"alpha": 0.8, "temperature": 2.0}, True)
    assert c1.exits == c2.exits == make_config().exits
    o1, o2 = imta_options(TrainOptions(), phases, "p1/model.pt")
    assert (o1.mode, o1.ge, o1.epochs, o1.lr, o1.init_model) == ("joint", True, 3, 0.1, None)
    assert (o2.mode, o2.ge, o2.epochs, o2.lr, o2.init_model) == ("classifiers", False, 2, 0.01,
                                                                  "p1/model.pt")
    assert o1.isc_transform == "add" and o2.isc_transform == "learned"  # IMTA's ISC in phase 2
    r2 = resolve(o2, c2)  # phase 2 takes the whole-network SGD defaults, no GE
    assert (r2.optimizer, r2.weight_decay, r2.ge) == ("sgd", 5e-4, False)
    # IMTA's own defaults: gamma = 0.1 (alpha = 0.9), T = 1
    assert ImtaPhases().alpha == 0.9 and ImtaPhases().temperature == 1.0


@pytest.mark.parametrize("options, config, message", [
    (TrainOptions(mode="joint"), make_config(), "drop --mode"),
    (TrainOptions(hdkd=True), make_config(), "--hdkd"),
    (TrainOptions(), make_config("pseudo"), "labels: pseudo"),
])
def test_recipe_refuses_what_it_sets_itself(options, config, message):
    with pytest.raises(ConfigError, match=message):
        imta_options(options, ImtaPhases(), None)
        imta_configs(config, ImtaPhases())


def test_classifiers_mode_needs_an_initial_model():
    with pytest.raises(ConfigError, match="starts from a trained model"):
        resolve(TrainOptions(mode="classifiers"), make_config())


@pytest.mark.slow
def test_two_phases_train_what_imta_trains(tmp_path):
    splits = load_dataset("digits", seed=0)
    model, metrics = train_backbone("digits-resnet", splits, epochs=2, seed=0, progress=False)
    ckpt = tmp_path / "bb.pt"
    save_backbone(ckpt, model, "digits-resnet", "digits", splits.info, metrics)
    phases = ImtaPhases(epochs1=1, epochs2=1, lr1=0.05, lr2=0.02)
    r = train_imta(make_config(), tmp_path / "imta", TrainOptions(), phases, checkpoint=str(ckpt),
                   splits=splits, log=None, progress=False)
    p1 = load_model(tmp_path / "imta" / "phase1" / "model.pt")
    p2 = load_model(r.model_path)
    assert json.loads((tmp_path / "imta" / "phase1" / "metrics.json").read_text())["options"][
        "ge"] is True
    o = r.metrics["options"]
    assert (o["mode"], o["lr"], o["epochs"]) == ("classifiers", 0.02, 1)
    assert r.metrics["recipe"]["phase1"]["lr"] == 0.05
    assert json.loads((r.out_dir / "metrics.json").read_text())["recipe"]["name"] == "imta"
    s1, s2 = p1.model.state_dict(), p2.model.state_dict()
    blocks = [k for k in s1 if k.startswith("backbone.blocks.")]
    assert blocks and all(torch.equal(s1[k], s2[k]) for k in blocks)  # frozen, BN stats too
    assert not torch.equal(s1["backbone.head.fc.weight"], s2["backbone.head.fc.weight"])
    assert not torch.equal(s1["branches.0.classifier.weight"], s2["branches.0.classifier.weight"])
    # phase 2 trains with IMTA's learned ISC up to the final head; its model says so
    assert p2.config.training.loss.isc and p2.model.isc_final and not p1.config.training.loss.isc
    assert p2.model.isc_transforms is not None and len(p2.model.isc_transforms) == 2
    assert p1.model.isc_transforms is None
    # the switch by hand: phase 2's loss on a batch is kd with ISC on every later classifier and
    # phase 1's final logits as the teacher
    x, y = splits.train[0][0][None], torch.tensor([splits.train[0][1]])
    with torch.no_grad():
        teacher = p1.model.eval()(x)[-1][0]
        outs = p2.model.eval()(x)
        z = [o[0] for o in outs]
        t = p2.model.isc_transforms  # Linear-BN-ReLU, then the classifier's share: by hand
        emb = [torch.relu(m.embed[1](m.embed[0](v))) for m, v in zip(t, [z[0]])]
        first = z[1] + t[0].out(emb[0])
        second = z[2] + t[1].out(torch.relu(t[1].embed[1](t[1].embed[0](first))))
        z2 = [z[0], first, second]
        p_t = torch.softmax(teacher, -1)
        by_hand = torch.nn.functional.cross_entropy(z2[2], y)
        for zi in z2[:2]:
            kl = float((p_t * (p_t.log() - torch.log_softmax(zi, -1))).sum())
            by_hand = by_hand + 0.9 * torch.nn.functional.cross_entropy(zi, y) + 0.1 * kl
        combined = [(c, h) for c, (_, h) in zip(p2.model.collaborate(z), outs)]
        got = compute_loss("kd", combined, y, teacher_logits=teacher, alpha=0.9, temperature=1.0)
    assert float(got) == pytest.approx(float(by_hand), rel=1e-5)
    assert math.isfinite(r.metrics["test"]["accuracy"])


@pytest.mark.parametrize("extra, message", [
    (["--phase2-epochs", "2"], "--phase2-epochs, --phase2-lr and --phase2-isc need --recipe imta"),
    (["--recipe", "imta", "--mode", "joint"], "--recipe imta sets each phase's mode itself"),
])
def test_cli_recipe_errors_are_one_line_exit_2(tmp_path, extra, message):
    from click.testing import CliRunner

    path = tmp_path / "c.yaml"
    save_config(make_config(), str(path))
    res = CliRunner().invoke(cli, ["train", "--config", str(path), "--out", str(tmp_path / "o"),
                                   *extra])
    assert res.exit_code == 2 and message in res.output


@pytest.mark.parametrize("options, message", [
    (TrainOptions(isc_transform="linear"), "--isc-transform must be one of add, learned"),
    (TrainOptions(isc_transform="learned"), "needs a configuration trained with ISC"),
])
def test_isc_transform_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve(options, make_config())
