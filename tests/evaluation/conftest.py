"""A hand-made 3-exit, 4-input example shared by the evaluation tests.

labels            [0, 1, 1, 0]
exit 1 predicts   [0, 0, 1, 1]  -> right [T, F, T, F], confidence [.875, .25, .5, .125]
exit 2 predicts   [1, 1, 0, 0]  -> right [F, T, F, T], confidence [.5, .75, .25, .25]
final  predicts   [0, 1, 1, 1]  -> right [T, T, T, F]
(confidences are exact in float32, so ties with thresholds are real ties)
"""
from __future__ import annotations

import numpy as np
import pytest

from dse.evaluation import ExitOutputs


def one_hot_logits(preds):
    return [[2.0, 0.0] if p == 0 else [0.0, 2.0] for p in preds]


@pytest.fixture
def hand_outputs() -> ExitOutputs:
    logits = np.array([one_hot_logits([0, 0, 1, 1]), one_hot_logits([1, 1, 0, 0]),
                       one_hot_logits([0, 1, 1, 1])], dtype=np.float32)
    conf = np.array([[0.875, 0.25, 0.5, 0.125], [0.5, 0.75, 0.25, 0.25], [1, 1, 1, 1]],
                    dtype=np.float32)
    return ExitOutputs(logits, conf, np.array([0, 1, 1, 0]))
