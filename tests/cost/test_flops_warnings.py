"""MAC counting stays quiet on current torch: fvcore's torch.jit deprecation warnings are
silenced where fvcore is called (dse/cost/flops.py), not in the test configuration, and the
counts are the ones fvcore gives."""
from __future__ import annotations

import warnings

from dse.cost.flops import backbone_macs, branch_macs
from dse.models.backbones import build_backbone
from dse.models.exits import build_branch


def test_counting_macs_raises_no_warning():
    net = build_backbone("resnet20", num_classes=10, in_channels=3)
    branch = build_branch("convx", (16, 32, 32), 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        total = backbone_macs(net, (3, 32, 32)).total_macs
        branch_total = branch_macs(branch, (16, 32, 32))
    assert [str(w.message) for w in caught] == []
    # ResNet-20 on CIFAR: about 40.6 M MACs (He et al. 2016 quote ~41 M FLOPs, BN folded)
    assert total == 40_555_136
    # convx (depth 1): 3x3 conv 16->16 on 32x32 (16*16*9*32*32 = 2,359,296; BN folded), global
    # average pool (one per input element: 16*32*32 = 16,384), classifier and confidence
    # (16*10 + 16*1 = 176)
    assert branch_total == 2_359_296 + 16_384 + 176
