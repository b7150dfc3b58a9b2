"""MNE: denoise_raw on the shipped 64-channel recording against the CLI's output file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mfr_eeg
from conftest import EDF, edf_scaling_uv, edf_steps_uv

mne = pytest.importorskip("mne")


@pytest.fixture(scope="module")
def cli_output(cli: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "clean.edf"
    r = subprocess.run([str(cli), "denoise", str(EDF), str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def test_denoise_raw_equals_the_cli_within_one_edf_step(cli_output: Path):
    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    before = raw.get_data()
    clean = mfr_eeg.denoise_raw(raw)
    # A copy: the input is untouched, info and annotations are kept.
    np.testing.assert_array_equal(raw.get_data(), before)
    assert clean is not raw
    assert clean.ch_names == raw.ch_names and clean.info["sfreq"] == raw.info["sfreq"]
    assert len(raw.annotations) > 0
    np.testing.assert_array_equal(clean.annotations.onset, raw.annotations.onset)
    np.testing.assert_array_equal(clean.annotations.description, raw.annotations.description)
    assert clean.info["meas_date"] == raw.info["meas_date"]

    ref = mne.io.read_raw_edf(cli_output, preload=True, verbose="error").get_data()
    got = clean.get_data()
    steps_v = np.array(edf_steps_uv(EDF)) * 1e-6
    assert steps_v.shape == (64,)
    # Same samples in, same pipeline: the CLI's output differs only by its rounding to the
    # EDF grid (at most half a step; 1e-3 step allows for float formatting of the volts).
    err_steps = np.abs(got - ref).max(axis=1) / steps_v
    assert err_steps.max() <= 0.5 + 1e-3, f"max {err_steps.max():.4f} steps on {raw.ch_names[err_steps.argmax()]}"
    change_steps = np.abs(got - before).max(axis=1) / steps_v
    assert np.median(change_steps) > 20, "denoising changed almost nothing"


def test_picks_leave_other_channels_alone():
    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error").crop(0, 10)
    clean = mfr_eeg.denoise_raw(raw, picks=["Fp1.", "Fp2."], notch=60)
    a, b = raw.get_data(), clean.get_data()
    changed = [n for n, x, y in zip(raw.ch_names, a, b) if not np.array_equal(x, y)]
    assert changed == ["Fp1.", "Fp2."]
    with pytest.raises(mfr_eeg.DenoiseError, match="--notch 55"):
        mfr_eeg.denoise_raw(raw, picks=["Fp1."], notch=55)
    inplace = mfr_eeg.denoise_raw(raw, picks=["Fp1."], copy=False)
    assert inplace is raw


def test_denoise_file_writes_what_the_cli_writes(cli_output: Path, tmp_path: Path):
    out = tmp_path / "py.edf"
    s = mfr_eeg.denoise_file(EDF, out)
    assert len(s["channels"]) == 64 and s["samples"] == 64 * 9760
    assert out.read_bytes() == cli_output.read_bytes()
    with pytest.raises(mfr_eeg.DenoiseError, match=r"eegmmidb_S001R02_64ch_160Hz_61s.edf: no channel labelled \"NotAChannel\"; channels are: Fc5\."):
        mfr_eeg.denoise_file(EDF, tmp_path / "x.edf", channels=["NotAChannel"])
    assert not (tmp_path / "x.edf").exists()


def test_denoise_raw_runs_the_eye_stage_as_the_cli_does(cli: Path, tmp_path: Path):
    """EEGLAB's tutorial recording (EOG1/EOG2, real blinks): ``denoise_raw`` with its default
    eye stage equals the CLI's output within its rounding; without the stage the frontal
    channels differ by the blinks."""
    edf = EDF.parent / "eeglab_tutorial_32ch_128Hz_238s.edf"
    out = tmp_path / "cli.edf"
    r = subprocess.run([str(cli), "denoise", str(edf), str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "blink source found" in r.stderr + r.stdout
    # EDF has no channel types: typed as MNE users do, so the picks are the CLI's EEG channels.
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    raw.set_channel_types({"EOG1": "eog", "EOG2": "eog"})
    ref = mne.io.read_raw_edf(out, preload=True, verbose="error").get_data()
    scaling = np.array(edf_scaling_uv(edf)) * 1e-6
    steps_v, lo, hi = scaling[:, 0], scaling[:, 1:2], scaling[:, 2:3]
    got = mfr_eeg.denoise_raw(raw).get_data()
    # The CLI's EDF keeps each channel's physical range, clipping (and counting) any output
    # sample beyond it; denoise_raw returns floats, so clip alike before comparing.
    outside = int(((got < lo) | (got > hi)).sum())
    m = re.search(r"clipped\s+(\d+) samples", r.stderr + r.stdout)
    assert (int(m.group(1)) if m else 0) == outside, (outside, r.stderr)
    got = np.clip(got, lo, hi)
    err_steps = np.abs(got - ref).max(axis=1) / steps_v
    assert err_steps.max() <= 0.5 + 1e-3, f"max {err_steps.max():.4f} steps on {raw.ch_names[err_steps.argmax()]}"
    plain = mfr_eeg.denoise_raw(raw, spatial=False).get_data()
    fp1 = raw.ch_names.index("FPz") if "FPz" in raw.ch_names else 0
    assert np.abs(plain[fp1] - ref[fp1]).max() / steps_v[fp1] > 100, "the eye stage changed nothing"
    with pytest.raises(mfr_eeg.DenoiseError, match="NoSuchEog"):
        mfr_eeg.denoise_raw(raw, eog=["NoSuchEog"])
