"""Deployment: export a trained early-exit model to an ONNX bundle and run it.

- :func:`export_bundle` (:mod:`dse.export.bundle`): a ``dse train`` model file -> a bundle
  folder (one ONNX graph per backbone segment and per exit head, ``manifest.json``, the runner);
- :mod:`dse.export.runner`: the early-exit runtime on ONNX Runtime (numpy + onnxruntime only;
  shipped inside every bundle as ``run_bundle.py``);
- :func:`run_bundle` (:mod:`dse.export.run`): a bundle on a dse dataset split (``dse run``).
"""
from __future__ import annotations

from dse.export.bundle import export_bundle
from dse.export.run import BadBundle, open_bundle, run_bundle

__all__ = ["BadBundle", "export_bundle", "open_bundle", "run_bundle"]
