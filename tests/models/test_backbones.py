from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from dse.cost.flops import backbone_macs
from dse.errors import CheckpointError, ConfigError, UnknownNameError
from dse.models.backbones import BACKBONES, Backbone, build_backbone, default_input_size

# Commonly cited MAC counts (one multiply-add = one MAC) at the usual input sizes.
CITED_MACS = {
    "resnet20": (32, 10, 41e6), "resnet56": (32, 10, 126e6), "resnet110": (32, 10, 254e6),
    "resnet18": (224, 1000, 1.82e9), "resnet50": (224, 1000, 4.1e9),
    "mobilenetv2": (224, 1000, 0.30e9), "vgg16": (224, 1000, 15.5e9),
}


@pytest.mark.parametrize("name", sorted(CITED_MACS))
def test_macs_match_cited_values_within_3_percent(name):
    size, classes, cited = CITED_MACS[name]
    model = build_backbone(name, num_classes=classes)
    macs = backbone_macs(model, (3, size, size)).total_macs
    assert abs(macs - cited) / cited < 0.03, f"{name}: {macs / 1e6:.1f}M vs cited {cited / 1e6:.1f}M"


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_has_blocks_head_and_features(name):
    channels = 1 if name == "digits-resnet" else 3
    size = min(default_input_size(name), 64)
    model = build_backbone(name, num_classes=7, in_channels=channels).eval()
    x = torch.randn(2, channels, size, size)
    feats = model.features(x)
    assert len(feats) == len(model.blocks) == len(model.block_names) >= 3
    assert model(x).shape == (2, 7)
    assert torch.allclose(model.head(feats[-1]), model(x))


def test_cifar_resnet_block_count_follows_6n_plus_2():
    assert len(build_backbone("resnet110", num_classes=10).blocks) == 1 + 54
    assert len(build_backbone("resnet20", num_classes=10).blocks) == 1 + 9


def test_vgg11_3block_layout():
    model = build_backbone("vgg11-3block", num_classes=10)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(model.blocks) == 3
    assert convs == [128, 128, 256, 256, 512, 512] and linears == [1024, 10]


def test_unknown_backbone_lists_names():
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet7'.*resnet20"):
        build_backbone("resnet7", num_classes=10)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        def seq(num_classes=10):
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                               nn.Linear(8, num_classes)))

        class Proto(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)])
                self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

        def proto():
            return Proto()

        def wrong():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_nets"
    sys.modules.pop("my_nets", None)


def test_user_backbone_sequential_and_protocol(user_module):
    seq = build_backbone(f"{user_module}:seq", num_classes=5)
    assert isinstance(seq, Backbone) and len(seq.blocks) == 5
    assert seq(torch.zeros(1, 3, 8, 8)).shape == (1, 5)
    proto = build_backbone(f"{user_module}:proto", num_classes=3)
    assert len(proto.blocks) == 2 and proto(torch.zeros(1, 3, 8, 8)).shape == (1, 3)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("my_nets:missing", "has no callable 'missing'"),
    ("my_nets:wrong", "the factory returned int"),
])
def test_user_backbone_errors(user_module, spec, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(spec, num_classes=10)


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = build_backbone("resnet8", num_classes=10)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, good)
    loaded = build_backbone("resnet8", num_classes=10, checkpoint=str(good))
    assert torch.equal(loaded.blocks[0][0].weight, model.blocks[0][0].weight)

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable torch checkpoint"):
        build_backbone("resnet8", num_classes=10, checkpoint=str(corrupt))
    with pytest.raises(CheckpointError, match="no such file"):
        build_backbone("resnet8", num_classes=10, checkpoint=str(tmp_path / "missing.pt"))
    other = tmp_path / "other.pt"
    torch.save(build_backbone("resnet20", num_classes=10).state_dict(), other)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        build_backbone("resnet8", num_classes=10, checkpoint=str(other))
    wrong_classes = tmp_path / "classes.pt"
    torch.save(build_backbone("resnet8", num_classes=100).state_dict(), wrong_classes)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        build_backbone("resnet8", num_classes=10, checkpoint=str(wrong_classes))
