"""Fuzz every file loader with random and mutated bytes: one line, exit 2, no traceback, nothing
written.

Each loader gets a valid seed file, then random byte strings and mutations of the seed (bit
flips, cuts, splices of YAML/pickle tokens), for a share of a fixed time budget. The generator is
seeded (``DSE_FUZZ_SEED``, default 0) so a failure names the input that can be replayed; the
budget is ``DSE_FUZZ_SECONDS`` (default 24 s over all loaders). The count of inputs tried is
printed. Commands that would start long work on a valid input are given a second, known-bad
option that fails right after the file is read (a missing profile, an unknown dataset, an output
folder below a file), so every input ends quickly.
"""
from __future__ import annotations

import os
import pickle
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dse.cli import cli
from dse.errors import DseError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("DSE_FUZZ_SEED", "0"))
BUDGET_S = float(os.environ.get("DSE_FUZZ_SECONDS", "24"))

#: fragments spliced into files: YAML syntax and tags, numbers that are not numbers, bad bytes
TOKENS = [b": ", b"- ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"<<: *a", b"!!python/object:os.system",
          b"!!binary AAAA", b".nan", b"-.inf", b"1e999", b"0x", b"~", b"null", b"true", b"\x00",
          b"\xff\xfe", b"\xc3", b"\t", b"\n", b"\r\n", b"'", b'"', b"#", b"%YAML 1.1\n", b"---\n",
          b"...\n", b"? ", b"|\n", b">\n", b"\\u0000", b"9" * 400, b"key: 1\nkey: 2\n",
          b"\x80\x02", b"c__builtin__\neval\n", b"PK\x03\x04", b"SQLite format 3\x00"]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """One random input: fresh random bytes, or the seed bit-flipped, cut, spliced or repeated."""
    kind = rng.randrange(7)
    if kind == 0 or not seed:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    data = bytearray(seed)
    if kind == 1:  # flip a few bits
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 2:  # truncate
        del data[rng.randrange(len(data)):]
    elif kind == 3:  # splice tokens
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice(TOKENS)
    elif kind == 4:  # delete or duplicate a chunk
        i = rng.randrange(len(data))
        j = min(len(data), i + rng.randrange(1, 64))
        if rng.random() < 0.5:
            del data[i:j]
        else:
            data[i:i] = data[i:j]
    elif kind == 5:  # overwrite bytes with random ones
        for _ in range(rng.randrange(1, 17)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:  # a line of the seed replaced by a token
        lines = bytes(data).split(b"\n")
        lines[rng.randrange(len(lines))] = rng.choice(TOKENS)
        data = bytearray(b"\n".join(lines))
    return bytes(data)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


# --------------------------------------------------------------------------- seeds

def space_seed(tmp: Path) -> bytes:
    return (ROOT / "tests" / "search" / "data" / "tiny.yaml").read_bytes()


def profile_seed(tmp: Path) -> bytes:
    return (ROOT / "hardware_profiles" / "jetson-nano.yaml").read_bytes()


def config_seed(tmp: Path) -> bytes:
    from dse.design import ExitDesign, ExitPolicy, RunConfig, TrainingSpec, save_config
    from dse.train.losses import LossSpec

    config = RunConfig(backbone="digits-resnet", dataset="digits",
                       exits=ExitDesign(2, "pareto", None, (1, 3), "convx", (("depth", 1),)),
                       training=TrainingSpec(loss=LossSpec("kd", {"alpha": 0.5})),
                       policy=ExitPolicy("entropy", (0.2, 0.3)), provenance=(("study", "s"),))
    save_config(config, str(tmp / "seed.yaml"))
    return (tmp / "seed.yaml").read_bytes()


def cifar_seed(tmp: Path) -> bytes:
    x = np.arange(4 * 3072, dtype=np.uint8).reshape(4, 3072)
    return pickle.dumps({b"data": x, b"labels": [0, 1, 2, 3]}, protocol=2)


def idx_seed(tmp: Path) -> bytes:
    a = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    return bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


def svhn_seed(tmp: Path) -> bytes:
    import scipy.io

    scipy.io.savemat(str(tmp / "seed.mat"), {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                             "y": np.array([[1], [10]], np.uint8)})
    return (tmp / "seed.mat").read_bytes()


def backbone_checkpoint_seed(tmp: Path) -> bytes:
    from dse.models.backbones import build_backbone

    torch.save(build_backbone("digits-resnet", num_classes=10, in_channels=1).state_dict(),
               tmp / "seed.pt")
    return (tmp / "seed.pt").read_bytes()


def model_seed(tmp: Path) -> bytes:
    from dse.train.model_file import RUN_FORMAT, RUN_VERSION

    config = yaml.safe_load(config_seed(tmp))
    torch.save({"format": RUN_FORMAT, "version": RUN_VERSION, "config": config,
                "input": {"num_classes": 10, "in_channels": 1, "input_size": 8},
                "state_dict": {"w": torch.zeros(2)}}, tmp / "seed.pt")
    return (tmp / "seed.pt").read_bytes()


def study_seed(tmp: Path) -> bytes:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp / 'seed.db'}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.set_user_attr("objectives", ["accuracy", "latency_ms"])
    del study
    return (tmp / "seed.db").read_bytes()


# --------------------------------------------------------------------------- loaders

def via_cli(*args: str, ok: tuple[int, ...] = (2,)) -> Callable[[Path, Path], None]:
    """A loader run through the CLI; ``{file}`` and ``{out}`` in ``args`` are filled in."""

    def check(file: Path, work: Path) -> None:
        argv = [a.format(file=file, out=work / "out", blocked=work / "blocker" / "out")
                for a in args]
        result = CliRunner().invoke(cli, argv, prog_name="dse")
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{argv}: {type(result.exception).__name__}: {result.exception}")
        assert result.exit_code in ok, (argv, result.exit_code, result.output)
        assert "Traceback" not in result.output, result.output
        if result.exit_code == 2:
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result.output)

    return check


def via_library(read: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    """A loader called directly: it returns, or raises a DseError of one line."""

    def check(file: Path, work: Path) -> None:
        try:
            read(file)
        except DseError as exc:
            assert "\n" not in str(exc).strip(), str(exc)
        except Exception as exc:  # noqa: BLE001 - anything else is the bug this test looks for
            raise AssertionError(f"{type(exc).__name__}: {exc}") from exc

    return check


def _cifar(path: Path) -> object:
    from dse.data.formats import read_cifar_batch

    return read_cifar_batch(path, "labels", 10)


def _idx(path: Path) -> object:
    from dse.data.formats import IDX_IMAGES_MAGIC, read_idx

    return read_idx(path, IDX_IMAGES_MAGIC)


def _svhn(path: Path) -> object:
    from dse.data.formats import read_svhn_mat

    return read_svhn_mat(path)


LOADERS = {
    # a valid space reaches the profile, which is missing: exit 2 before any work
    "search space": ("space.yaml", space_seed, via_cli(
        "search", "--space", "{file}", "--profile", "/nonexistent/p.yaml", "--out", "{out}")),
    "profile": ("p.yaml", profile_seed, via_cli("profile", "show", "{file}", ok=(0, 2))),
    # a valid configuration reaches the output folder, which lies below a file: exit 2
    "run config": ("c.yaml", config_seed, via_cli("train", "--config", "{file}", "--out",
                                                  "{blocked}")),
    "cifar batch": ("data_batch_1", cifar_seed, via_library(_cifar)),
    "idx": ("train-images-idx3-ubyte", idx_seed, via_library(_idx)),
    "svhn mat": ("train_32x32.mat", svhn_seed, via_library(_svhn)),
    "backbone checkpoint": ("b.pt", backbone_checkpoint_seed, via_cli(
        "inspect", "--backbone", "digits-resnet", "--checkpoint", "{file}", ok=(0, 2))),
    # a valid model reaches the dataset, which is unknown: exit 2
    "trained model": ("model.pt", model_seed, via_cli(
        "evaluate", "--checkpoint", "{file}", "--dataset", "nosuchdata", "--out", "{out}")),
    "study": ("study.db", study_seed, via_cli(
        "report", "--study", "s", "--storage", "sqlite:///{file}", "--out", "{out}")),
}
#: files SQLite itself may add beside a database it opened
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


@pytest.mark.parametrize("name", list(LOADERS))
def test_fuzzed_files_end_in_one_line_and_exit_2(name, tmp_path, capsys, monkeypatch):
    filename, make_seed, check = LOADERS[name]
    monkeypatch.chdir(tmp_path)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    seed = make_seed(seeds)
    rng = random.Random(f"{SEED}:{name}")
    deadline = time.monotonic() + BUDGET_S / len(LOADERS)
    tried = 0
    while tried < 3 or time.monotonic() < deadline:
        work = tmp_path / f"w{tried}"
        work.mkdir()
        (work / "blocker").write_text("a file, not a folder")
        data = seed if tried == 0 else mutate(rng, seed)
        file = work / filename
        file.write_bytes(data)
        before = snapshot(work)
        try:
            check(file, work)
        except AssertionError as exc:
            raise AssertionError(f"{name} input #{tried} (DSE_FUZZ_SEED={SEED}) "
                                 f"{data[:200]!r}...: {exc}") from None
        after = {k: v for k, v in snapshot(work).items()
                 if not (name == "study" and k.endswith(SQLITE_SIDECARS))}
        if name == "study":  # SQLite may rewrite the file it opened; nothing else may appear
            after[filename] = before[filename]
        assert after == before, f"{name} input #{tried} wrote {sorted(set(after) - set(before))}"
        tried += 1
    with capsys.disabled():
        print(f"\nfuzz {name}: {tried} inputs tried (DSE_FUZZ_SEED={SEED})")
