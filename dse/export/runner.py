"""Run an exported early-exit bundle on ONNX Runtime: numpy + onnxruntime only, no torch, no dse.

``dse export`` copies this file into every bundle as ``run_bundle.py``, so a board that has
Python, numpy and onnxruntime runs the bundle with nothing else installed::

    python run_bundle.py --bundle . --inputs images.npy [--labels labels.npy] [--json]

``images.npy`` holds float32 inputs already normalised as ``manifest.json`` says
(``input.normalisation``), shape ``[N, C, H, W]``; ``dse run`` uses the same code on a dse
dataset. The early-exit loop, at batch 1 (the deployment case)::

    features = input
    for n, step in enumerate(exits):             # early exits first, the final head last
        features = segment_n(features)           # backbone blocks up to exit n's attach point
        logits, confidence = head_n(features)    # confidence: learned criterion only
        if isc and 0 < n < last: logits += previous logits     (inline subnetwork collaboration)
        if n == last or criterion fires on (logits, confidence) with threshold_n: stop

Scores are the formulas of ``dse/models/criteria.py``, written again here in numpy because this
file must not import dse (a test checks the two agree): ``learned`` exits when the confidence
head h >= T, ``maxprob`` when max softmax >= T, ``entropy`` when the normalised entropy
H(p) / log K <= T. As in the PyTorch early-exit path, the score is computed in float64 and
rounded to float32 before the comparison with the float32 threshold.

Every user mistake (missing graph, a graph that does not match the manifest, inputs of the
wrong shape) raises :class:`BundleError` with one line; ``main`` prints it and exits with 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BUNDLE_FORMAT, BUNDLE_VERSION = "dse-bundle", 1
MANIFEST = "manifest.json"


class BundleError(Exception):
    """A bundle or its inputs are unusable; the message is one line naming what and where."""


# --- exit criteria (same formulas as dse/models/criteria.py) -------------------------------------

def _softmax64(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def criterion_score(name: str, logits: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
    """Per-sample score of ``logits`` [N, K] (and ``confidence`` [N]) as float32."""
    if name == "learned":
        if confidence is None:
            raise BundleError("criterion 'learned' needs the exit's confidence output")
        return np.asarray(confidence, dtype=np.float32)
    if name == "maxprob":
        return _softmax64(logits).max(axis=-1).astype(np.float32)
    if name == "entropy":
        z = logits.astype(np.float64)
        logp = z - z.max(axis=-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
        h = -(np.exp(logp) * np.maximum(logp, np.log(1e-12))).sum(axis=-1)
        return (h / np.log(logits.shape[-1])).astype(np.float32)
    raise BundleError(f"unknown exit criterion {name!r} (known: learned, maxprob, entropy)")


def criterion_fires(name: str, score: np.ndarray, threshold: float) -> np.ndarray:
    """Exit when score >= T (learned, maxprob) or score <= T (entropy); T rounded to float32."""
    t = np.float32(threshold)
    return score <= t if name == "entropy" else score >= t


# --- the bundle -----------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """``manifest.json`` of ``folder``, checked for format and version."""
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise BundleError(f"{folder}: no such bundle folder")
    if not path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST} (not a bundle written by dse export)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a dse bundle manifest (format {BUNDLE_FORMAT!r} expected)")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle version {manifest.get('version')!r}, this runner reads "
                          f"version {BUNDLE_VERSION}")
    for key in ("input", "criterion", "exits", "graphs", "isc"):
        if key not in manifest:
            raise BundleError(f"{path}: key {key!r} is missing")
    return manifest


class Bundle:
    """An exported bundle opened on ONNX Runtime: one session per segment and per exit head.

    Opening checks every graph named by the manifest: the file is there, its sha256 is the one
    recorded, and its inputs and outputs have the names and shapes the manifest states.
    """

    def __init__(self, folder: str | os.PathLike, provider: str = "CPUExecutionProvider",
                 threads: int | None = None) -> None:
        import onnxruntime as ort  # here: importing this module must not need onnxruntime

        self.folder = Path(folder)
        self.manifest = m = read_manifest(folder)
        available = ort.get_available_providers()
        if provider not in available:
            raise BundleError(f"execution provider {provider!r} is not available here "
                              f"(available: {', '.join(available)})")
        self.provider = provider
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.input_shape = tuple(int(d) for d in m["input"]["shape"])
        self.criterion = str(m["criterion"]["name"])
        self.thresholds = [float(t) for t in m["criterion"]["thresholds"]]
        self.exits = list(m["exits"])
        if len(self.thresholds) != len(self.exits) - 1:
            raise BundleError(f"{self.folder / MANIFEST}: {len(self.exits) - 1} early exits but "
                              f"{len(self.thresholds)} thresholds")
        self.isc = bool(m["isc"])
        self.sessions: dict[str, Any] = {}
        for e in self.exits:
            for key in ("segment", "head"):
                name = e.get(key)
                if name not in m["graphs"]:
                    raise BundleError(f"{self.folder / MANIFEST}: exit {e.get('index')} names "
                                      f"graph {name!r}, which the manifest's 'graphs' does not describe")
                self.sessions[name] = self._open(ort, opts, name, m["graphs"][name])
        # (segment session, its input name, head session, its input name) per exit, in order
        self.steps = []
        for e in self.exits:
            seg, head = self.sessions[e["segment"]], self.sessions[e["head"]]
            self.steps.append((seg, seg.get_inputs()[0].name, head, head.get_inputs()[0].name))
        first = self.sessions[self.exits[0]["segment"]].get_inputs()[0].shape
        if [d if isinstance(d, int) else None for d in first[1:]] != list(self.input_shape[1:]):
            raise BundleError(f"{self.folder / MANIFEST}: input.shape {list(self.input_shape)} "
                              f"does not match {self.exits[0]['segment']}, which takes {list(first)}")

    def _open(self, ort, opts, name: str, spec: dict[str, Any]):
        path = self.folder / name
        if not path.is_file():
            raise BundleError(f"{self.folder}: graph {name} listed in {MANIFEST} is missing")
        if spec.get("sha256") and sha256_of(path) != spec["sha256"]:
            raise BundleError(f"{path}: does not match {MANIFEST} (sha256 differs); re-export the "
                              f"bundle")
        try:
            # CPU as the fallback for ops the chosen provider does not take (ORT's usual setup)
            providers = list(dict.fromkeys([self.provider, "CPUExecutionProvider"]))
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{path}: onnxruntime cannot load it ({first})") from exc
        for kind, declared, actual in (("inputs", spec["inputs"], session.get_inputs()),
                                       ("outputs", spec["outputs"], session.get_outputs())):
            got = [[a.name, [d if isinstance(d, int) else str(d) for d in a.shape]] for a in actual]
            want = [[d["name"], list(d["shape"])] for d in declared]
            if got != want:
                raise BundleError(f"{path}: {kind} {got} do not match {MANIFEST} ({want})")
        return session

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """``x`` as float32 [N, C, H, W] with the bundle's C, H, W, or a one-line error."""
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise BundleError(f"inputs of shape {list(x.shape)}, the bundle takes "
                              f"[N, {', '.join(str(d) for d in self.input_shape[1:])}] "
                              f"(input.shape in {MANIFEST})")
        return np.ascontiguousarray(x, dtype=np.float32)

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Early-exit inference of one input [1, C, H, W]: (logits [K], exit index)."""
        last = len(self.exits) - 1
        features = x
        previous = None
        for n, (seg, seg_input, head, head_input) in enumerate(self.steps):
            features = seg.run(None, {seg_input: features})[0]
            outs = head.run(None, {head_input: features})
            logits = outs[0]
            if n == last:
                return logits[0], n
            if self.isc:
                if previous is not None:
                    logits = logits + previous
                previous = logits
            conf = outs[1] if len(outs) > 1 else None
            if bool(criterion_fires(self.criterion, criterion_score(self.criterion, logits, conf),
                                    self.thresholds[n])[0]):
                return logits[0], n
        raise AssertionError("unreachable: the final exit always returns")

    def run(self, x: np.ndarray, labels: np.ndarray | None = None,
            warmup: int = 10) -> dict[str, Any]:
        """Every input at batch 1: predictions, exits, logits, and wall time measured here.

        ``warmup`` untimed calls (cycling over the first inputs) come first; each input is then
        timed on its own with ``perf_counter`` around :meth:`infer`.
        """
        x = self.check_inputs(x)
        n = int(x.shape[0])
        if n == 0:
            raise BundleError("no inputs to run")
        for i in range(warmup):
            self.infer(x[i % n:i % n + 1])
        logits, exits, times = [], [], []
        for i in range(n):
            xi = x[i:i + 1]
            start = time.perf_counter()
            z, k = self.infer(xi)
            times.append((time.perf_counter() - start) * 1e3)
            logits.append(z)
            exits.append(k)
        return summarise(self.manifest, np.stack(logits), np.asarray(exits), times, labels,
                         provider=self.provider, warmup=warmup)


def summarise(manifest: dict[str, Any], logits: np.ndarray, exits: np.ndarray,
              times_ms: Sequence[float], labels: np.ndarray | None, *, provider: str,
              warmup: int) -> dict[str, Any]:
    """Accuracy (percent), exit mix, expected MACs and measured latency of one run."""
    n_exits = len(manifest["exits"])
    n = int(exits.size)
    counts = np.bincount(exits, minlength=n_exits)
    fractions = counts / max(n, 1)
    macs = [int(e["cumulative_macs"]) for e in manifest["exits"]]
    per_exit = []
    for k in range(n_exits):
        mine = [t for t, e in zip(times_ms, exits) if e == k]
        per_exit.append(statistics.median(mine) if mine else None)
    predictions = logits.argmax(axis=1)
    out: dict[str, Any] = {
        "images": n, "exit_counts": counts.tolist(), "exit_fractions": fractions.tolist(),
        "exit_macs": macs, "expected_macs": float(np.dot(fractions, macs)),
        "predictions": predictions.tolist(), "exit_index": exits.tolist(),
        "measured_here": {
            "provider": provider, "batch": 1, "warmup": warmup,
            "per_input_median_ms": statistics.median(times_ms),
            "per_input_mean_ms": float(np.mean(times_ms)),
            "per_input_p90_ms": float(np.percentile(times_ms, 90)),
            "per_exit_median_ms": per_exit,
        },
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != n:
            raise BundleError(f"{labels.size} labels for {n} inputs")
        out["accuracy"] = 100.0 * float(np.mean(predictions == labels))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python run_bundle.py --bundle DIR --inputs X.npy [--labels Y.npy] [--json]``."""
    p = argparse.ArgumentParser(description="Run a dse early-exit bundle on ONNX Runtime "
                                            "(batch 1, stop at the first exit that fires).")
    p.add_argument("--bundle", default=str(Path(__file__).resolve().parent),
                   help="bundle folder (default: the folder of this file)")
    p.add_argument("--inputs", required=True, help=".npy of float32 [N, C, H, W], normalised")
    p.add_argument("--labels", default=None, help=".npy of int labels [N] (for accuracy)")
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        bundle = Bundle(args.bundle, provider=args.provider, threads=args.threads)
        x = _load_npy(args.inputs)
        y = _load_npy(args.labels) if args.labels else None
        result = bundle.run(x, y, warmup=args.warmup)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["measured_here"]
    if "accuracy" in result:
        print(f"accuracy {result['accuracy']:.2f}% on {result['images']} inputs")
    print("exit mix: " + ", ".join(f"{100 * f:.1f}%" for f in result["exit_fractions"]))
    print(f"expected MACs {result['expected_macs'] / 1e6:.3f} M per input")
    print(f"measured here ({m['provider']}, batch 1): {m['per_input_median_ms']:.3f} ms median "
          f"per input; per exit " + ", ".join("-" if t is None else f"{t:.3f}"
                                              for t in m["per_exit_median_ms"]) + " ms")
    return 0


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable .npy file ({exc})") from exc


if __name__ == "__main__":
    sys.exit(main())
