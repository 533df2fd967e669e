"""Design-space exploration with Optuna: search spaces, the study, workers, export.

- :mod:`dse.search.space` (and :mod:`~dse.search.dims`): search-space YAML -> validated spec ->
  Optuna suggestions (fixed-length encoding).
- :mod:`dse.search.context`: the per-study setup (data, frozen backbone, feature cache, costs).
- :mod:`dse.search.objective`: one trial = configuration -> proxy training -> metrics -> attrs.
- :mod:`dse.search.study`, :mod:`~dse.search.storage`, :mod:`~dse.search.worker`: objectives,
  samplers, storage with heartbeat, resumable multi-process runs to N COMPLETE trials.
- :mod:`dse.search.pareto` (pure) and :mod:`~dse.search.export`: fronts, hypervolume, CSVs, configs.
"""
from __future__ import annotations

from dse.search.pareto import hypervolume, normalised_hypervolume, pareto_front
from dse.search.space import Candidate, SearchSpace, load_space, parse_space

__all__ = ["Candidate", "SearchSpace", "hypervolume", "load_space", "normalised_hypervolume",
           "pareto_front", "parse_space"]
