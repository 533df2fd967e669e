"""Hardware profiles: find, load and describe ``hardware_profiles/*.yaml``.

The public face of three modules: what a profile is (:mod:`dse.cost._profile_types`: the
device, its power modes, its runtimes and their per-op latency parameters), how a YAML file
becomes one (:mod:`dse.cost._profile_schema`: every key checked, one error line naming the file
and the key), and, here, where profiles are found and how they are shown. Import every name
from this module.

Shipped profiles are found in ``hardware_profiles/`` (located by :mod:`dse.resources`) and in the
folders of ``DSE_PROFILES_DIR``, searched first; ``aliases:`` in a profile add other names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dse.cost._profile_schema import parse_profile, read_profile
from dse.cost._profile_types import (DTYPE_BYTES, FIT_GROUPS, Device, OpParams, PowerMode,
                                     Profile, PublishedRow, Runtime, fitted_op)
from dse.cost.harness import LEGACY_REFERENCE
from dse.errors import ConfigError, UnknownNameError
from dse.registry import Registry
from dse.resources import shipped_profiles
from dse.yamlio import read_yaml

__all__ = ["DTYPE_BYTES", "FIT_GROUPS", "SHIPPED_DIR", "Device", "OpParams", "PowerMode",
           "Profile", "PublishedRow", "Runtime", "error_line", "fitted_op", "list_profiles",
           "load_profile", "parse_profile", "profile_dirs", "profile_registry",
           "profile_to_dict", "read_profile"]

SHIPPED_DIR = shipped_profiles()


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
