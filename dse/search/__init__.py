"""Design-space exploration with Optuna: search spaces, the study, workers, export.

- :mod:`dse.search.space` (with :mod:`~dse.search.space_params` and
  :mod:`~dse.search.dims`): search-space YAML -> validated spec -> Optuna suggestions ->
  :class:`dse.design.Design`.
- :mod:`dse.search.context`: the per-study setup (data, frozen backbone, feature cache, costs).
- :mod:`dse.search.objective`: one design -> proxy training -> metrics -> attributes.
- :mod:`dse.search.runner`: the Optuna objective (one trial, stored through the schema).
- :mod:`dse.search.schema`: every study and trial attribute; feasibility and the front.
- :mod:`dse.search.study`, :mod:`~dse.search.storage`, :mod:`~dse.search.worker`: objectives,
  samplers, storage with heartbeat, resumable multi-process runs to N COMPLETE trials.
- :mod:`dse.search.pareto` (pure numpy) and :mod:`~dse.search.refine`: fronts, hypervolume,
  threshold refinement; :mod:`~dse.search.export`: CSVs and configs.

This package imports nothing at import time, so ``import dse.search.pareto`` stays light.

To run a search from Python, call ``dse.api.search`` (also ``dse.run_search``; see
``help(dse.api.search)`` for every argument): the function cannot be ``dse.search`` itself,
which is this package.
"""
