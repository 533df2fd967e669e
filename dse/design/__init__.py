"""The one typed design of dse: what a search trial decodes into, a config file round-trips,
and training, evaluation, fine-tuning, reports and export take.

See :mod:`dse.design.types` for the dataclasses, :mod:`dse.design.knobs` for how a field
becomes a search dimension, :mod:`dse.design.losses` for the loss declarations and
:mod:`dse.design.files` for the config-file format.
"""
from __future__ import annotations

from dse.design.files import config_from_section, load_config, save_config
from dse.design.losses import LOSS_KINDS, LossSpec, loss_param_names, validate_loss_params
from dse.design.types import (CONFIG_VERSION, LABEL_SOURCES, OPTIMIZERS, Design, ExitDesign, ExitPolicy,
                              RunConfig, TrainingSpec)

__all__ = ["CONFIG_VERSION", "Design", "ExitDesign", "ExitPolicy", "LABEL_SOURCES", "LOSS_KINDS",
           "LossSpec", "OPTIMIZERS", "RunConfig", "TrainingSpec", "config_from_section",
           "load_config", "loss_param_names", "save_config",
           "validate_loss_params"]
