"""Profile YAML -> :class:`dse.cost.profiles.Profile`: the schema, checked key by key.

Raw YAML dicts live only in this loader: it rejects unknown keys, missing fields, wrong types and
out-of-range numbers with one line naming the file and the key, and returns the frozen
dataclasses of :mod:`dse.cost._profile_types`. The keys and their meaning are those
dataclasses' fields; ``hardware_profiles/*.yaml`` are the worked examples. Import
:func:`parse_profile` and :func:`read_profile` from :mod:`dse.cost.profiles`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dse.cost._profile_types import (DTYPE_BYTES, FIT_GROUPS, Device, OpParams, PowerMode,
                                     Profile, PublishedRow, Runtime)
from dse.cost.harness import LEGACY_REFERENCE, REFERENCES
from dse.cost.layout import DEFAULT_BLOCK
from dse.cost.op_kinds import FALLBACK_KINDS, OP_KINDS
from dse.errors import ConfigError
from dse.yamlio import read_yaml


class _Checker:
    """Pulls typed, range-checked values out of a raw YAML mapping; one error line each."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.path}: {key} {message}")

    def mapping(self, raw: Any, where: str, required: set[str], optional: set[str]) -> dict:
        if not isinstance(raw, dict):
            self.fail(where or "the file", f"must be a mapping, got {type(raw).__name__}")
        prefix = f"{where}." if where else ""
        for key in raw:
            if key not in required | optional:
                self.fail(f"{prefix}{key}", "is not a known key; expected one of: "
                          + ", ".join(sorted(required | optional)))
        for key in sorted(required):
            if key not in raw:
                self.fail(f"{prefix}{key}", "is missing (required)")
        return raw

    def number(self, raw: dict, where: str, key: str, low: float = 0.0, high: float | None = None,
               default: float | None = None, low_open: bool = False) -> float:
        name = f"{where}.{key}" if where else key
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, f"must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(name, f"must be a finite number, got {value!r}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            rng = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high else "")
            self.fail(name, f"must be {rng}, got {value!r}")
        return float(value)

    def string(self, raw: dict, where: str, key: str, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str:
        name = f"{where}.{key}" if where else key
        value = raw.get(key, default)
        if not isinstance(value, str) or not value:
            self.fail(name, f"must be a non-empty string, got {value!r}")
        if choices and value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, raw: dict, where: str, key: str, low: int = 1, high: int | None = None,
                high_name: str = "") -> int:
        value = raw.get(key)
        name = f"{where}.{key}" if where else key
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(name, f"must be an integer >= {low}, got {value!r}")
        if high is not None and value > high:
            self.fail(name, f"must be <= {high_name} ({high}), got {value!r}")
        return value

    def flag(self, raw: dict, where: str, key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"must be true or false, got {value!r}")
        return value

    def strings(self, raw: dict, where: str, key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(f"{where}.{key}" if where else key, f"must be a list of strings, got {value!r}")
        return tuple(value)


def _op_params(c: _Checker, raw: Any, where: str) -> OpParams:
    c.mapping(raw, where, {"overhead_us", "compute_eff", "memory_eff"},
              {"m_half", "n_half", "k_half", "overlap", "mn_half"})
    return OpParams(
        overhead_us=c.number(raw, where, "overhead_us"),
        compute_eff=c.number(raw, where, "compute_eff", 0.0, 1.0, low_open=True),
        memory_eff=c.number(raw, where, "memory_eff", 0.0, 1.0, low_open=True),
        **{k: c.number(raw, where, k, default=0.0) for k in ("m_half", "n_half", "k_half")},
        overlap=c.number(raw, where, "overlap", 0.0, 1.0, default=1.0),
        mn_half=c.number(raw, where, "mn_half", default=0.0),
    )


_RUNTIME_KEYS = {"description", "dtype", "ops", "fusion", "async_launch", "threads",
                 "call_overhead_us", "decision_overhead_us", "inference_overhead_us",
                 "alloc_us_per_mb", "alloc_min_kb", "power_w", "power_mode", "sources",
                 "tensor_core_align", "unaligned_eff", "fit", "fit_error",
                 "graph_run_overhead_us", "reference_us", "reference", "blocked_layout", "reorder_us",
                 "reorder_us_per_kelem", "layout_block"}


def _fit(c: _Checker, raw: dict, where: str) -> tuple[dict[str, float], dict[str, float]]:
    """A runtime's ``fit`` multipliers (FIT_GROUPS, each > 0) and ``fit_error`` numbers."""
    fit = c.mapping(raw.get("fit", {}), f"{where}.fit", set(), set(FIT_GROUPS))
    err = c.mapping(raw.get("fit_error", {}), f"{where}.fit_error", set(),
                    {"rows", "models", "median_abs_error", "max_abs_error", "loo_median_abs_error"})
    return ({k: c.number(fit, f"{where}.fit", k, low_open=True) for k in fit},
            {k: c.number(err, f"{where}.fit_error", k) for k in err})


def _runtime(c: _Checker, name: str, raw: Any, device: Device) -> Runtime:
    where = f"runtimes.{name}"
    c.mapping(raw, where, {"dtype", "ops", "decision_overhead_us", "power_w"},
              _RUNTIME_KEYS - {"dtype", "ops", "decision_overhead_us", "power_w"})
    dtype = c.string(raw, where, "dtype", choices=tuple(DTYPE_BYTES))
    if dtype not in device.peak_gflops:
        c.fail(f"{where}.dtype", f"is {dtype!r} but device.peak_gflops has no {dtype!r} entry")
    ops_raw = c.mapping(raw["ops"], f"{where}.ops", set(OP_KINDS), set(FALLBACK_KINDS))
    threads = c.integer(raw, where, "threads") if raw.get("threads") is not None else None
    mode = raw.get("power_mode")
    if mode is not None and (not isinstance(mode, str) or mode not in device.power_modes):
        c.fail(f"{where}.power_mode", f"must be one of {', '.join(device.power_modes)}, got {mode!r}")
    align = raw.get("tensor_core_align", 0)
    if isinstance(align, bool) or not isinstance(align, int) or align < 0:
        c.fail(f"{where}.tensor_core_align", f"must be an integer >= 0, got {align!r}")
    fit, fit_error = _fit(c, raw, where)
    power_w = c.number(raw, where, "power_w")
    budget = device.power_modes[mode or device.default_power_mode].budget_w
    if budget > 0 and power_w > budget:
        c.fail(f"{where}.power_w", f"must be <= the budget of its power mode "
               f"{mode or device.default_power_mode!r} ({budget:g} W), got {power_w:g}")
    return Runtime(
        name=name, description=str(raw.get("description", "")), dtype=dtype,
        ops={k: _op_params(c, ops_raw[k], f"{where}.ops.{k}") for k in (*OP_KINDS, *FALLBACK_KINDS)
             if k in ops_raw},
        fusion=c.flag(raw, where, "fusion", False),
        async_launch=c.flag(raw, where, "async_launch", False), threads=threads,
        call_overhead_us=c.number(raw, where, "call_overhead_us", default=0.0),
        decision_overhead_us=c.number(raw, where, "decision_overhead_us"),
        inference_overhead_us=c.number(raw, where, "inference_overhead_us", default=0.0),
        graph_run_overhead_us=c.number(raw, where, "graph_run_overhead_us", default=0.0),
        alloc_us_per_mb=c.number(raw, where, "alloc_us_per_mb", default=0.0),
        alloc_min_kb=c.number(raw, where, "alloc_min_kb", default=128.0),
        blocked_layout=c.flag(raw, where, "blocked_layout", False),
        reorder_us=c.number(raw, where, "reorder_us", default=0.0),
        reorder_us_per_kelem=c.number(raw, where, "reorder_us_per_kelem", default=0.0),
        layout_block=(c.integer(raw, where, "layout_block") if "layout_block" in raw
                      else DEFAULT_BLOCK),
        power_w=power_w, power_mode=mode,
        sources=c.strings(raw, where, "sources"), tensor_core_align=align,
        unaligned_eff=c.number(raw, where, "unaligned_eff", 0.0, 1.0, default=1.0, low_open=True),
        fit=fit, fit_error=fit_error,
        reference_us=c.number(raw, where, "reference_us", default=0.0),
        reference=_reference(c, raw, where),
    )


def _reference(c: _Checker, raw: dict, where: str) -> str:
    """A runtime's timing reference: its ``reference`` (a name of
    :data:`dse.cost.harness.REFERENCES`), the legacy one for a profile with ``reference_us`` and
    no name (calibrated before profiles named theirs), "" without a reference time."""
    name = raw.get("reference")
    if name is None:
        return LEGACY_REFERENCE if raw.get("reference_us") else ""
    if name not in REFERENCES:
        c.fail(f"{where}.reference", f"must be one of {', '.join(REFERENCES)}, got {name!r}")
    return str(name)


def _power_mode(c: _Checker, name: str, body: Any, device_emc: float | None,
                device_tpcs: int | None) -> PowerMode:
    """One ``device.power_modes`` entry; ``emc_mhz`` and ``gpu_tpcs`` need the device's own,
    which they are scaled against, and a mode cannot turn on more TPCs than the device has."""
    where = f"device.power_modes.{name}"
    c.mapping(body, where, {"budget_w", "clock_mhz"}, {"notes", "cpu_mhz", "emc_mhz", "gpu_tpcs"})
    cpu = c.number(body, where, "cpu_mhz", low_open=True) if "cpu_mhz" in body else None
    emc = tpcs = None
    if "emc_mhz" in body:
        if device_emc is None:
            c.fail(f"{where}.emc_mhz", "needs device.emc_mhz (the memory clock of "
                   "memory_bandwidth_gbs) to scale the bandwidth against")
        emc = c.number(body, where, "emc_mhz", low_open=True)
    if "gpu_tpcs" in body:
        if device_tpcs is None:
            c.fail(f"{where}.gpu_tpcs", "needs device.gpu_tpcs (the GPU's TPC count) to scale "
                   "compute against")
        tpcs = c.integer(body, where, "gpu_tpcs", high=device_tpcs,
                         high_name="device.gpu_tpcs")
    return PowerMode(name, c.number(body, where, "budget_w"),
                     c.number(body, where, "clock_mhz", low_open=True), cpu, emc, tpcs)


def _device(c: _Checker, raw: Any) -> Device:
    c.mapping(raw, "device", {"kind", "clock_mhz", "peak_gflops", "memory_bandwidth_gbs",
                              "power_modes", "default_power_mode"},
              {"sources", "notes", "cpu_clock_mhz", "emc_mhz", "gpu_tpcs"})
    peaks = c.mapping(raw["peak_gflops"], "device.peak_gflops", set(), set(DTYPE_BYTES))
    if not peaks:
        c.fail("device.peak_gflops", "must name at least one dtype (fp32, fp16, bf16, int8)")
    emc = c.number(raw, "device", "emc_mhz", low_open=True) if "emc_mhz" in raw else None
    tpcs = c.integer(raw, "device", "gpu_tpcs") if "gpu_tpcs" in raw else None
    modes_raw = raw["power_modes"]
    if not isinstance(modes_raw, dict) or not modes_raw:
        c.fail("device.power_modes", f"must be a non-empty mapping, got {modes_raw!r}")
    modes = {str(m): _power_mode(c, str(m), body, emc, tpcs) for m, body in modes_raw.items()}
    default_mode = c.string(raw, "device", "default_power_mode", choices=tuple(modes))
    return Device(
        kind=c.string(raw, "device", "kind", choices=("gpu", "cpu")),
        clock_mhz=c.number(raw, "device", "clock_mhz", low_open=True),
        peak_gflops={k: c.number(peaks, "device.peak_gflops", k, low_open=True) for k in peaks},
        memory_bandwidth_gbs=c.number(raw, "device", "memory_bandwidth_gbs", low_open=True),
        power_modes=modes, default_power_mode=default_mode,
        sources=c.strings(raw, "device", "sources"),
        cpu_clock_mhz=(c.number(raw, "device", "cpu_clock_mhz", low_open=True)
                       if "cpu_clock_mhz" in raw else None),
        emc_mhz=emc, gpu_tpcs=tpcs,
    )


_ROW_KEYS = {"source", "model", "runtime", "precision", "batch", "input_size", "power_mode", "ms"}


def _fitted_to(c: _Checker, raw: Any, device: Device, runtimes: dict[str, Runtime]
               ) -> tuple[PublishedRow, ...]:
    """The ``fitted_to`` rows: every field present, runtime and power mode known."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.fail("fitted_to", f"must be a list of rows, got {type(raw).__name__}")
    rows = []
    for i, row in enumerate(raw):
        where = f"fitted_to[{i}]"
        c.mapping(row, where, _ROW_KEYS, {"notes", "classes"})
        batch, size, classes = row["batch"], row["input_size"], row.get("classes", 1000)
        for key, value in (("batch", batch), ("input_size", size), ("classes", classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                c.fail(f"{where}.{key}", f"must be an integer >= 1, got {value!r}")
        rows.append(PublishedRow(
            source=c.string(row, where, "source"), model=c.string(row, where, "model"),
            runtime=c.string(row, where, "runtime", choices=tuple(runtimes)),
            precision=c.string(row, where, "precision", choices=tuple(DTYPE_BYTES)),
            batch=batch, input_size=size,
            power_mode=c.string(row, where, "power_mode", choices=tuple(device.power_modes)),
            ms=c.number(row, where, "ms", low_open=True), notes=str(row.get("notes", "")),
            classes=classes))
    return tuple(rows)


def parse_profile(raw: Any, path: str) -> Profile:
    """Validate a profile's raw YAML content; ``path`` names it in error messages."""
    c = _Checker(path)
    c.mapping(raw, "", {"name", "device", "runtimes", "default_runtime"},
              {"description", "aliases", "notes", "fitted_to"})
    device = _device(c, raw["device"])
    runtimes_raw = raw["runtimes"]
    if not isinstance(runtimes_raw, dict) or not runtimes_raw:
        c.fail("runtimes", f"must be a non-empty mapping of runtime name -> settings, got {runtimes_raw!r}")
    runtimes = {str(k): _runtime(c, str(k), v, device) for k, v in runtimes_raw.items()}
    default = c.string(raw, "", "default_runtime", choices=tuple(runtimes))
    return Profile(name=c.string(raw, "", "name"), description=str(raw.get("description", "")),
                   device=device, runtimes=runtimes, default_runtime=default,
                   aliases=c.strings(raw, "", "aliases"), path=path,
                   fitted_to=_fitted_to(c, raw.get("fitted_to"), device, runtimes))


def read_profile(path: str | os.PathLike) -> Profile:
    """Load and validate one profile YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: profile file does not exist")
    return parse_profile(read_yaml(p), str(p))
