"""Shared fixtures: the repository's shipped data and the `mfr-eeg` CLI binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDF = ROOT / "data" / "eegmmidb_S001R02_64ch_160Hz_61s.edf"
MODEL = ROOT / "models" / "general-256hz.safetensors"
DEFAULT = ROOT / "models" / "fast-256hz.safetensors"
TINY = ROOT / "models" / "tiny-128hz-int8.safetensors"


@pytest.fixture(scope="session")
def cli() -> Path:
    """The CLI: $MFR_EEG_BIN, else target/release/mfr-eeg under $CARGO_TARGET_DIR or the
    repository (built with cargo if absent)."""
    if os.environ.get("MFR_EEG_BIN"):
        return Path(os.environ["MFR_EEG_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "release" / "mfr-eeg"
    if not exe.exists():
        cargo = shutil.which("cargo")
        if cargo is None:
            pytest.skip("no mfr-eeg binary and no cargo to build it")
        subprocess.run([cargo, "build", "--release", "--bin", "mfr-eeg"], cwd=ROOT, check=True)
    return exe


def edf_steps_uv(path: Path) -> list[float]:
    """Per signal except "EDF Annotations", the physical value of one digital step
    ((pmax - pmin) / (dmax - dmin)), read from the fixed-width EDF header."""
    return [s for s, _, _ in edf_scaling_uv(path)]


def edf_scaling_uv(path: Path) -> list[tuple[float, float, float]]:
    """Per signal except "EDF Annotations": (step, physical minimum, physical maximum), read
    from the fixed-width EDF header."""
    h = path.read_bytes()
    ns = int(h[252:256])
    base = 256

    def field(offset: int, width: int, i: int) -> float:
        start = base + offset * ns + width * i
        return float(h[start : start + width])

    # Field offsets in units of ns: label 16, transducer 80, dimension 8, pmin 8, pmax 8,
    # dmin 8, dmax 8.
    o_pmin = 16 + 80 + 8
    steps = []
    for i in range(ns):
        label = h[base + 16 * i : base + 16 * (i + 1)].decode("ascii").strip()
        if label == "EDF Annotations":
            continue
        pmin = field(o_pmin, 8, i)
        pmax = field(o_pmin + 8, 8, i)
        dmin = field(o_pmin + 16, 8, i)
        dmax = field(o_pmin + 24, 8, i)
        steps.append(((pmax - pmin) / (dmax - dmin), pmin, pmax))
    return steps
