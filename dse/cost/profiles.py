"""Hardware profiles: load, validate and look up ``hardware_profiles/*.yaml``.

A profile holds the device's facts (peak throughput per dtype, memory bandwidth, power modes),
each with its public source, and one or more *runtimes* (PyTorch eager, TensorRT, a native C++
engine, or ``host`` for a profile fitted by ``dse profile calibrate``). A runtime holds what the
latency model (:mod:`dse.cost.latency`) needs per op kind: efficiency against the device's peak
compute and bandwidth, per-kernel overhead, and GEMM half-saturation sizes; plus per-exit decision
overhead, per-inference overhead, fusion, and power for energy.

Power modes (``device.power_modes``, nvpmodel modes on Jetsons) each give ``budget_w`` and the
GPU ``clock_mhz``, and optionally what else the mode caps, each scaled against the device's own
value (a mode that omits a field runs as the device):

* ``cpu_mhz`` (against ``device.cpu_clock_mhz``): host CPU clock; host costs scale by its inverse.
* ``emc_mhz`` (against ``device.emc_mhz``, the memory clock of ``memory_bandwidth_gbs``): memory
  bandwidth scales with it (our choice: bandwidth proportional to the EMC clock, as the data
  sheets' peak is bus width x transfer rate; latencies and refresh are ignored). It may exceed
  the device's (Xavier NX's 20 W modes run the memory at 1866 MHz, its data sheet's 51.2 GB/s
  is at 1600 MHz).
* ``gpu_tpcs`` (an integer, at most ``device.gpu_tpcs``): GPU TPCs left on. Peak compute and
  the convolutions' occupancy size ``mn_half`` (one output tile per SM) scale with the fraction
  of SMs on (our choice: every TPC holds the same SMs, and nothing else changes).

Raw YAML dicts live only in this loader: it rejects unknown keys, missing fields, wrong types and
out-of-range numbers with one line naming the file and the key, and returns frozen dataclasses.
Shipped profiles are found in ``hardware_profiles/`` (located by :mod:`dse.resources`) and in the
folders of ``DSE_PROFILES_DIR``, searched first; ``aliases:`` in a profile add other names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dse.cost.harness import LEGACY_REFERENCE, REFERENCES
from dse.cost.layout import DEFAULT_BLOCK
from dse.cost.op_trace import FALLBACK_KINDS, OP_KINDS
from dse.errors import ConfigError, UnknownNameError
from dse.registry import Registry
from dse.resources import shipped_profiles
from dse.yamlio import read_yaml

#: Multipliers a runtime's ``fit:`` may hold (dse.cost.published fits them to the profile's
#: ``fitted_to`` rows); each scales the written parameters of one op class, so the YAML keeps the
#: physical prior and the fitted correction apart. ``overhead`` scales every host cost.
#: ``saturation`` scales the GEMM half-saturation sizes (m_half, n_half, k_half, mn_half) of
#: convolutions: how large a layer must be to fill the device (SMs, vector lanes, threads).
FIT_GROUPS = ("conv_compute", "saturation", "pwconv_compute", "dwconv", "linear", "memory",
              "overhead")
#: Bytes per element of each dtype a runtime may compute in.
DTYPE_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}
SHIPPED_DIR = shipped_profiles()


@dataclass(frozen=True)
class OpParams:
    """Latency parameters of one op kind on one runtime (see dse.cost.latency for the formula)."""

    overhead_us: float          # fixed cost per kernel (dispatch, launch)
    compute_eff: float          # fraction of the dtype's peak throughput reached, in (0, 1]
    memory_eff: float           # fraction of the memory bandwidth reached, in (0, 1]
    m_half: float = 0.0         # GEMM M (output pixels x batch) at which efficiency halves
    n_half: float = 0.0         # GEMM N (output channels)
    k_half: float = 0.0         # GEMM K (input channels x kernel area)
    overlap: float = 1.0        # 1: time = max(compute, memory); 0: their sum
    mn_half: float = 0.0        # GEMM output elements M x N at which efficiency halves
                                # (too few output tiles to occupy every SM; 0: no such limit)


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: its power budget and the clocks and units it caps (None: as the device)."""

    name: str
    budget_w: float
    clock_mhz: float
    cpu_mhz: float | None = None           # host CPU clock in this mode (None: as the default)
    emc_mhz: float | None = None           # memory (EMC) clock; scales the bandwidth
    gpu_tpcs: int | None = None            # GPU TPCs left on; scales compute and mn_half


@dataclass(frozen=True)
class PublishedRow:
    """One published batch-1 latency a profile is fitted to (``fitted_to`` in the YAML)."""

    source: str          # document and table/section, precise enough to find the number
    model: str           # a dse backbone name (resnet18, mobilenetv2, ...)
    runtime: str         # the profile's runtime that reproduces the measurement
    precision: str       # fp32, fp16, int8
    batch: int
    input_size: int      # square input side in pixels
    power_mode: str      # one of the device's power modes
    ms: float            # the published latency, milliseconds
    notes: str = ""
    classes: int = 1000  # classifier outputs of the measured network (its last linear layer)


@dataclass(frozen=True)
class Device:
    kind: str                              # "gpu" or "cpu"
    clock_mhz: float                       # clock at which peak_gflops holds
    peak_gflops: dict[str, float]          # dtype -> peak GFLOPS (2 FLOPs per MAC)
    memory_bandwidth_gbs: float
    power_modes: dict[str, PowerMode]
    default_power_mode: str
    sources: tuple[str, ...] = ()
    cpu_clock_mhz: float | None = None     # host CPU clock at which the host costs hold
    emc_mhz: float | None = None           # memory (EMC) clock at which memory_bandwidth_gbs holds
    gpu_tpcs: int | None = None            # GPU TPCs at which peak_gflops and mn_half hold


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    dtype: str
    ops: dict[str, OpParams]
    fusion: bool = False                   # conv+bn+relu(+add) run as one kernel
    async_launch: bool = False             # host dispatch overlaps device work between syncs
    threads: int | None = None             # CPU threads the runtime uses (None: all)
    call_overhead_us: float = 0.0          # per nn.Module call (Python), eager runtimes only
    decision_overhead_us: float = 0.0      # per early exit evaluated (score, compare, sync)
    inference_overhead_us: float = 0.0     # once per inference (entry, input copy, output)
    graph_run_overhead_us: float = 0.0     # per graph run of a cut net (segment, exit head)
    alloc_us_per_mb: float = 0.0           # fresh-page cost of large new outputs (eager CPU)
    alloc_min_kb: float = 128.0            # outputs below this reuse allocator memory
    blocked_layout: bool = False           # convolutions run in a blocked layout (dse.cost.layout)
    reorder_us: float = 0.0                # blocked layout: fixed cost of one tensor reorder ...
    reorder_us_per_kelem: float = 0.0      # ... and its cost per 1000 elements
    layout_block: int = DEFAULT_BLOCK      # ... in channel blocks of this (dse.cost.layout)
    power_w: float = 0.0                   # average power while running, for energy
    power_mode: str | None = None          # None: the device's default power mode
    sources: tuple[str, ...] = ()
    tensor_core_align: int = 0             # GEMM channels must be multiples of this for the
                                           # dtype's peak (Tensor Cores); 0: no such rule
    unaligned_eff: float = 1.0             # compute_eff factor of a GEMM that is not aligned
    fit: dict[str, float] = field(default_factory=dict)        # FIT_GROUPS -> multiplier
    fit_error: dict[str, float] = field(default_factory=dict)  # the fit's error on its rows
    reference_us: float = 0.0              # host timing reference's time (dse.cost.harness), 0: none
    reference: str = ""                    # that reference's name (dse.cost.harness.REFERENCES)

    @property
    def dtype_bytes(self) -> float:
        return DTYPE_BYTES[self.dtype]

    @property
    def host_scale(self) -> float:
        """The fitted multiplier of every host cost (dispatch, launch, module calls)."""
        return self.fit.get("overhead", 1.0)

    def op(self, kind: str) -> OpParams:
        """Parameters of an op kind with the fit applied; optional kinds (conv_gemm, pwconv)
        fall back to their base kind. ``overhead_us`` is as written (see :attr:`host_scale`)."""
        base = kind
        while base not in self.ops:  # conv_gemm_strided -> conv_gemm -> conv
            base = FALLBACK_KINDS[base]
        p = self.ops[base]
        return fitted_op(kind, p, self.fit) if self.fit else p


def fitted_op(kind: str, p: OpParams, fit: dict[str, float]) -> OpParams:
    """``p`` with the fit's efficiency multipliers of ``kind``'s class (capped at 1)."""
    compute = memory = 1.0
    if kind in ("conv", "conv_gemm", "conv_gemm_strided", "pwconv"):
        compute *= fit.get("conv_compute", 1.0)
    if kind == "pwconv":
        compute *= fit.get("pwconv_compute", 1.0)
    if kind == "dwconv":
        compute *= fit.get("dwconv", 1.0)
        memory *= fit.get("dwconv", 1.0)
    if kind == "linear":
        compute *= fit.get("linear", 1.0)
        memory *= fit.get("linear", 1.0)
    if kind != "view":
        memory *= fit.get("memory", 1.0)
    sat = (fit.get("saturation", 1.0)
           if kind in ("conv", "conv_gemm", "conv_gemm_strided", "pwconv", "dwconv") else 1.0)
    return replace(p, compute_eff=min(p.compute_eff * compute, 1.0),
                   memory_eff=min(p.memory_eff * memory, 1.0),
                   m_half=p.m_half * sat, n_half=p.n_half * sat, k_half=p.k_half * sat,
                   mn_half=p.mn_half * sat)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: Device
    runtimes: dict[str, Runtime]
    default_runtime: str
    aliases: tuple[str, ...] = ()
    path: str = ""
    fitted_to: tuple[PublishedRow, ...] = ()

    def runtime(self, name: str | None = None) -> Runtime:
        """The named runtime, or the profile's default; unknown names list the valid ones.

        ``NAME@MODE`` (or ``@MODE`` for the default runtime) runs it in power mode MODE (an
        nvpmodel name on Jetsons); the returned runtime is named ``NAME@MODE``. The mode's
        budget bounds the average power: its ``power_w`` is ``min(power_w, budget_w)``, so
        energy per inference (``power_w x latency``, dse.cost.latency.energy_mj) never exceeds
        the mode's watts x the latency in that mode (its clocks and units: :meth:`clock_scale`,
        :meth:`host_scale`, :meth:`bandwidth_scale`, :meth:`sm_scale`).
        """
        key, _, mode = (name or "").partition("@")
        key = key or self.default_runtime
        if key not in self.runtimes:
            raise UnknownNameError(
                f"profile {self.name!r} has no runtime {key!r}; expected one of: "
                f"{', '.join(self.runtimes)}")
        rt = self.runtimes[key]
        if not mode:
            return rt
        if mode not in self.device.power_modes:
            raise UnknownNameError(
                f"profile {self.name!r} has no power mode {mode!r}; expected one of: "
                f"{', '.join(self.device.power_modes)}")
        budget = self.device.power_modes[mode].budget_w
        return replace(rt, name=f"{key}@{mode}", power_mode=mode,
                       power_w=min(rt.power_w, budget) if budget > 0 else rt.power_w)

    def power_mode(self, runtime: Runtime) -> PowerMode:
        """The power mode the runtime runs in (its own, else the device's default)."""
        return self.device.power_modes[runtime.power_mode or self.device.default_power_mode]

    def clock_scale(self, runtime: Runtime) -> float:
        """Compute throughput factor of the runtime's power mode against the peak's clock."""
        return self.power_mode(runtime).clock_mhz / self.device.clock_mhz

    def host_scale(self, runtime: Runtime) -> float:
        """Factor on host costs: the fit's ``overhead`` times the CPU clock ratio of the mode
        (host dispatch is CPU-bound, so a mode with a slower CPU clock pays more per op)."""
        mode, base = self.power_mode(runtime).cpu_mhz, self.device.cpu_clock_mhz
        clock = base / mode if mode and base else 1.0
        return runtime.host_scale * clock

    def bandwidth_scale(self, runtime: Runtime) -> float:
        """Memory bandwidth factor of the mode: its EMC clock over the device's (our choice:
        bandwidth proportional to the memory clock, as the data sheets' peak is bus width x
        transfer rate; 1 when either clock is not given)."""
        mode, base = self.power_mode(runtime).emc_mhz, self.device.emc_mhz
        return mode / base if mode and base else 1.0

    def sm_scale(self, runtime: Runtime) -> float:
        """Fraction of the device's SMs the mode leaves on: its GPU TPCs over the device's
        (every TPC holds the same number of SMs). Peak compute and the occupancy size mn_half
        scale with it (dse.cost.latency); 1 when either count is not given."""
        mode, base = self.power_mode(runtime).gpu_tpcs, self.device.gpu_tpcs
        return mode / base if mode and base else 1.0


# --- validation ----------------------------------------------------------------------------

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


# --- registry of shipped profiles ----------------------------------------------------------

def profile_dirs() -> list[Path]:
    """Folders searched for profiles: DSE_PROFILES_DIR entries first, then the shipped folder."""
    extra = [Path(d) for d in os.environ.get("DSE_PROFILES_DIR", "").split(os.pathsep) if d]
    return [*extra, SHIPPED_DIR]


def profile_registry() -> Registry[Path]:
    """Profile name (and aliases) -> YAML path; the first folder holding a name wins."""
    reg: Registry[Path] = Registry("hardware profile")
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            if path.stem in reg:
                continue
            try:
                aliases = read_yaml(path).get("aliases", []) or []
            except (ConfigError, AttributeError):
                aliases = []  # reported when the profile itself is loaded (or listed)
            aliases = [a for a in aliases if isinstance(a, str) and a not in reg] \
                if isinstance(aliases, list) else []
            reg.add(path.stem, path, *aliases)
    return reg


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name or "/" in name


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name or alias, or any profile YAML by path."""
    if _looks_like_path(name_or_path):
        return read_profile(name_or_path)
    reg = profile_registry()
    if name_or_path not in reg:
        aliases = ", ".join(f"{a} -> {t}" for a, t in sorted(reg.aliases().items()))
        raise UnknownNameError(
            f"unknown hardware profile {name_or_path!r}; expected one of: {', '.join(reg.names())}"
            + (f" (aliases: {aliases})" if aliases else "") + ", or a path to a profile YAML")
    path = reg.get(name_or_path)
    profile = read_profile(path)
    if profile.name != path.stem:
        raise ConfigError(f"{path}: name must match the file name {path.stem!r}, got {profile.name!r}")
    return profile


def list_profiles(skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """One summary per registered profile: name, aliases, description, runtimes, default.

    A file that does not load (not UTF-8, bad YAML, a broken value) is left out rather than
    failing the whole list; its one-line error is appended to ``skipped`` when given.
    """
    reg = profile_registry()
    aliases: dict[str, list[str]] = {}
    for alias, target in reg.aliases().items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for name in reg.names():
        try:
            profile = read_profile(reg.get(name))
        except ConfigError as exc:
            if skipped is not None:
                skipped.append(str(exc))
            continue
        rows.append({"name": name, "aliases": sorted(aliases.get(name, [])),
                     "description": profile.description, "device": profile.device.kind,
                     "runtimes": list(profile.runtimes), "default_runtime": profile.default_runtime,
                     "path": str(reg.get(name))})
    return rows


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile as plain data (the YAML schema), for ``profile show`` and calibrate."""
    dev = profile.device

    def runtime(rt: Runtime) -> dict[str, Any]:
        body: dict[str, Any] = {"description": rt.description, "dtype": rt.dtype,
                                "fusion": rt.fusion, "async_launch": rt.async_launch}
        if rt.threads is not None:
            body["threads"] = rt.threads
        for key in ("call_overhead_us", "decision_overhead_us", "inference_overhead_us",
                    "alloc_us_per_mb", "alloc_min_kb", "power_w"):
            body[key] = _round(getattr(rt, key))
        if rt.graph_run_overhead_us:
            body["graph_run_overhead_us"] = _round(rt.graph_run_overhead_us)
        if rt.reference_us:
            body["reference_us"] = _round(rt.reference_us)
            body["reference"] = rt.reference or LEGACY_REFERENCE
        if rt.blocked_layout:
            body["blocked_layout"] = True
            body["reorder_us"] = _round(rt.reorder_us)
            body["reorder_us_per_kelem"] = _round(rt.reorder_us_per_kelem)
            body["layout_block"] = rt.layout_block
        if rt.power_mode:
            body["power_mode"] = rt.power_mode
        body["ops"] = {k: {f: _round(getattr(p, f), 6) for f in p.__dataclass_fields__}
                       for k, p in rt.ops.items()}
        if rt.tensor_core_align:
            body["tensor_core_align"] = rt.tensor_core_align
            body["unaligned_eff"] = _round(rt.unaligned_eff)
        if rt.fit:
            body["fit"] = dict(rt.fit)
        if rt.fit_error:
            body["fit_error"] = dict(rt.fit_error)
        body["sources"] = list(rt.sources)
        return body

    def mode(m: PowerMode) -> dict[str, Any]:
        return {"budget_w": m.budget_w, "clock_mhz": m.clock_mhz,
                **{k: getattr(m, k) for k in ("cpu_mhz", "emc_mhz", "gpu_tpcs") if getattr(m, k)}}

    return {
        "name": profile.name, "description": profile.description,
        **({"aliases": list(profile.aliases)} if profile.aliases else {}),
        "default_runtime": profile.default_runtime,
        "device": {
            "kind": dev.kind, "clock_mhz": dev.clock_mhz,
            "peak_gflops": {k: _round(v) for k, v in dev.peak_gflops.items()},
            "memory_bandwidth_gbs": _round(dev.memory_bandwidth_gbs),
            "power_modes": {m.name: mode(m) for m in dev.power_modes.values()},
            "default_power_mode": dev.default_power_mode, "sources": list(dev.sources),
            **{k: getattr(dev, k) for k in ("cpu_clock_mhz", "emc_mhz", "gpu_tpcs")
               if getattr(dev, k)},
        },
        "runtimes": {name: runtime(rt) for name, rt in profile.runtimes.items()},
        **({"fitted_to": [{k: v for k, v in r.__dict__.items()
                           if (k != "notes" or v) and (k != "classes" or v != 1000)}
                          for r in profile.fitted_to]} if profile.fitted_to else {}),
    }


def _round(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def error_line(profile: Profile, runtime: Runtime | None = None) -> str:
    """One line for users (``dse profile show``, the report's title page): the model's error on this profile's published rows, or that it is
    not validated on this device."""
    rt = runtime or profile.runtime()
    base = rt.name.partition("@")[0]
    err = profile.runtimes[base].fit_error if base in profile.runtimes else {}
    if not err:
        return (f"latency model not validated on {profile.name}/{base}: no published "
                "measurements cited for this runtime")
    return (f"latency model error on {profile.name}/{base}: median {100 * err['median_abs_error']:.0f}% "
            f"(leave-one-model-out {100 * err['loo_median_abs_error']:.0f}%) over "
            f"{int(err['rows'])} published batch-1 rows on {int(err['models'])} models")
