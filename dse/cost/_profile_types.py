"""What a hardware profile is: the device, its runtimes and their per-op latency parameters.

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

These are frozen dataclasses built only by :mod:`dse.cost._profile_schema` from a YAML file;
import them from :mod:`dse.cost.profiles`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from dse.cost.layout import DEFAULT_BLOCK
from dse.cost.op_kinds import FALLBACK_KINDS
from dse.errors import UnknownNameError

#: Multipliers a runtime's ``fit:`` may hold (dse.cost.published fits them to the profile's
#: ``fitted_to`` rows); each scales the written parameters of one op class, so the YAML keeps the
#: physical prior and the fitted correction apart. ``overhead`` scales every host cost.
#: ``saturation`` scales the GEMM half-saturation sizes (m_half, n_half, k_half, mn_half) of
#: convolutions: how large a layer must be to fill the device (SMs, vector lanes, threads).
FIT_GROUPS = ("conv_compute", "saturation", "pwconv_compute", "dwconv", "linear", "memory",
              "overhead")
#: Bytes per element of each dtype a runtime may compute in.
DTYPE_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}


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
    """The hardware's facts, each from a cited source (``sources``): peak throughput per dtype at
    ``clock_mhz``, memory bandwidth, and the power modes that cap them."""

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
    """One way of running a network on the device (eager PyTorch, TensorRT, ONNX Runtime, a native
    engine, or ``host`` from a calibration): per-op latency parameters (:meth:`op`) and the host
    costs around them, which :func:`dse.cost.latency.predict` prices a trace with."""

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
    """A device and the runtimes it can run, from one YAML file (``path``), with the published
    rows its runtimes are fitted to (``fitted_to``)."""

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
