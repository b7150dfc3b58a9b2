"""Arrays, models, streaming and errors of the mfr_eeg package."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import mfr_eeg
from conftest import DEFAULT, MODEL, TINY


def test_model_metadata():
    m = mfr_eeg.Model.load(MODEL)
    meta = m.metadata
    assert (m.d_in, m.d_sae, m.k, m.hop, m.sample_rate_hz) == (256, 1024, 128, 8, 256.0)
    assert meta["normalisation"] == m.metadata["normalisation"] != ""
    assert meta["d_in"] == 256 and meta["int8"] is False
    assert m.path == str(MODEL)
    d = mfr_eeg.Model.default()
    assert d.metadata == mfr_eeg.Model.load(DEFAULT).metadata and d.path == "<memory>"
    assert d.metadata != meta
    # The default's correction gate, and none in the plain model.
    assert d.metadata["blend"] == (0.125, 0.625) and meta["blend"] is None
    assert d.metadata["blend_slow"] is None
    assert d.metadata["format_version"] == 6
    t = mfr_eeg.Model.load(TINY)
    assert t.int8 and t.sample_rate_hz == 128.0
    assert mfr_eeg.Model.from_bytes(MODEL.read_bytes()).metadata == meta


def test_model_errors_name_the_file():
    with pytest.raises(mfr_eeg.ModelError, match=r"^/nonexistent/x\.safetensors: "):
        mfr_eeg.Model.load("/nonexistent/x.safetensors")
    with pytest.raises(mfr_eeg.ModelError, match=r"^<memory>: invalid model: "):
        mfr_eeg.Model.from_bytes(b"\x01\x02\x03")


def _signal(channels: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 256.0
    x = 20 * np.sin(2 * np.pi * 10 * t) + 5 * rng.standard_normal((channels, n))
    x[0, 300:340] += 150  # a blink-like step
    return x.astype(np.float32)


def _stream(s, x, rng, most=700):
    outs, at = [], 0
    while at < x.shape[1]:
        chunk = x[:, at : at + int(rng.integers(0, most))]  # empty chunks included
        outs.append(s.push(chunk))
        assert outs[-1].shape[0] == x.shape[0] and outs[-1].dtype == x.dtype
        at += chunk.shape[1]
        assert s.released <= at <= s.released + s.latency
    return outs


@pytest.mark.parametrize("sfreq,dtype", [(256.0, np.float32), (160.0, np.float64)])
def test_streamer_chunks_of_random_sizes_equal_denoise(sfreq, dtype):
    # DC offsets of hundreds of microvolts: the Streamer keeps each channel's baseline as
    # denoise does, and equals it bit for bit (the stream's end is known only at finish).
    x = (_signal(3, int(sfreq * 13.7), seed=1) + np.array([[-400.0], [0.0], [250.0]])).astype(dtype)
    opts = dict(notch=50.0, unit="mV") if sfreq == 160.0 else {}
    s = mfr_eeg.Streamer(None, 3, sfreq, **opts)
    assert s.latency_s == pytest.approx(s.latency / sfreq)
    if sfreq == 256.0:
        # 1 s block + baseline look-ahead (2 s + 0.25 s grid) + the 256-sample window.
        assert s.latency == 256 + 512 + 64 + 256
    outs = _stream(s, x, np.random.default_rng(7))
    outs.append(s.finish())
    y = np.concatenate(outs, axis=1)
    np.testing.assert_array_equal(y, mfr_eeg.denoise(x, sfreq, **opts))
    assert np.abs(y - x).max() > (1e-3 if opts else 1.0), "denoising changed nothing"
    with pytest.raises(mfr_eeg.DenoiseError, match="finished"):
        s.push(x[:, :10])


def test_ola_sine_streams_as_denoise_and_differs_from_hann():
    x = _signal(2, 256 * 9, seed=3)
    s = mfr_eeg.Streamer(None, 2, 256.0, hop=40, ola="sine")
    outs = _stream(s, x, np.random.default_rng(5))
    outs.append(s.finish())
    sine = mfr_eeg.denoise(x, 256.0, hop=40, ola="sine")
    np.testing.assert_array_equal(np.concatenate(outs, axis=1), sine)
    hann = mfr_eeg.denoise(x, 256.0, hop=40, ola="hann")
    # Without ``ola`` the model's own taper (its metadata) is used.
    own = mfr_eeg.Model.default().metadata["ola"]
    assert own in ("hann", "sine")
    np.testing.assert_array_equal(mfr_eeg.denoise(x, 256.0, hop=40), sine if own == "sine" else hann)
    d = np.abs(sine - hann).max()
    assert 1e-3 < d < np.sqrt(np.mean(x.astype(np.float64) ** 2)), d
    with pytest.raises(mfr_eeg.DenoiseError, match="--ola cosine: must be hann or sine"):
        mfr_eeg.denoise(x, 256.0, ola="cosine")


def test_core_streamer_chunks_of_random_sizes_equal_one_whole_push():
    # The streaming core's equality with its offline form is tested in Rust (core and C ABI
    # tests); here: the binding passes every chunk size through unchanged. (It has no baseline
    # stage, so it is not `denoise`.)
    x = _signal(3, 1500, seed=1)
    model = mfr_eeg.Model.default()
    s = mfr_eeg.CoreStreamer(model, 3, 256.0)
    assert s.latency == 255 and s.latency_s == pytest.approx(255 / 256)
    rng = np.random.default_rng(7)
    outs, at = [], 0
    while at < x.shape[1]:
        n = int(rng.integers(0, 200))  # empty chunks included
        outs.append(s.push(x[:, at : at + n]))
        at += n
    y = np.concatenate(outs, axis=1)
    assert y.shape == x.shape and y.dtype == np.float32
    whole = mfr_eeg.CoreStreamer(model, 3, 256.0).push(x)
    np.testing.assert_array_equal(y, whole)
    # Past the latency it is the signal, denoised: close to it, not equal.
    lag = x[:, 300 : 1500 - s.latency]
    out = y[:, 300 + s.latency :]
    assert np.abs(out - lag).max() > 1.0, "denoising changed nothing"
    assert np.corrcoef(out.ravel(), lag.ravel())[0, 1] > 0.5
    assert s.faults == 0


def test_dtype_and_units_are_kept():
    x = _signal(2, 800, seed=2)
    y32 = mfr_eeg.denoise(x, 256.0)
    y64 = mfr_eeg.denoise(x.astype(np.float64) * 1e-6, 256.0, unit="V")
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    # The same f32 samples in microvolts go through; only the final division differs.
    np.testing.assert_allclose(y64 * 1e6, y32, rtol=1e-6, atol=1e-5)
    # Resampled path (160 Hz): same length, finite, changed.
    z = mfr_eeg.denoise(x, 160.0, notch=60, bandpass=(1, 40))
    assert z.shape == x.shape and np.isfinite(z).all()


def test_bad_input_raises_clear_exceptions():
    x = _signal(2, 600, seed=3)
    bad = x.copy()
    bad[1, 5] = np.nan
    with pytest.raises(mfr_eeg.DenoiseError, match=r'<array>: channel "C4": sample 5 is NaN'):
        mfr_eeg.denoise(bad, 256.0, ch_names=["C3", "C4"])
    with pytest.raises(ValueError, match=r"2-D \[channels, samples\], got shape \(600,\)"):
        mfr_eeg.denoise(x[0], 256.0)
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 600\)"):
        mfr_eeg.denoise(x[None], 256.0)
    with pytest.raises(TypeError, match="float32 or float64 array, got dtype int64"):
        mfr_eeg.denoise(np.zeros((2, 600), dtype=np.int64), 256.0)
    with pytest.raises(TypeError, match="got dtype complex128"):
        mfr_eeg.denoise(np.zeros((2, 600), dtype=complex), 256.0)
    with pytest.raises(mfr_eeg.DenoiseError, match="no channels to denoise"):
        mfr_eeg.denoise(np.zeros((0, 600), dtype=np.float32), 256.0)
    with pytest.raises(mfr_eeg.DenoiseError, match="channels have no samples"):
        mfr_eeg.denoise(np.zeros((2, 0), dtype=np.float32), 256.0)
    with pytest.raises(mfr_eeg.DenoiseError, match=r"--bandpass 40,1: need 0 < low < high"):
        mfr_eeg.denoise(x, 256.0, bandpass=(40, 1))
    with pytest.raises(mfr_eeg.DenoiseError, match="--notch 55"):
        mfr_eeg.denoise(x, 256.0, notch=55)
    with pytest.raises(mfr_eeg.DenoiseError, match="--hop 999 must be between 1 and"):
        mfr_eeg.denoise(x, 256.0, hop=999)
    with pytest.raises(mfr_eeg.DenoiseError, match="sampling rate -1"):
        mfr_eeg.denoise(x, -1.0)
    with pytest.raises(mfr_eeg.DenoiseError, match=r"model's rate \(256 Hz\), not 160 Hz"):
        mfr_eeg.CoreStreamer(None, 2, 160.0)
    s = mfr_eeg.CoreStreamer(None, 2, 256.0)
    with pytest.raises(mfr_eeg.DenoiseError, match="chunk has 3 channels, the streamer 2"):
        s.push(np.zeros((3, 10), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype int32"):
        s.push(np.zeros((2, 10), dtype=np.int32))
    # Streaming repairs non-finite samples (counted) instead of refusing them.
    s.push(bad)
    assert s.faults == 1
    with pytest.raises(mfr_eeg.DenoiseError, match="at least one channel"):
        mfr_eeg.CoreStreamer(None, 0, 256.0)
    # The pipeline Streamer refuses non-finite samples (naming channel and sample) and keeps
    # going as if the chunk had not been pushed.
    p = mfr_eeg.Streamer(None, 2, 256.0, ch_names=["Fp1", "Cz"])
    p.push(np.zeros((2, 30), dtype=np.float32))
    with pytest.raises(mfr_eeg.DenoiseError, match=r'channel "Cz": sample 35 is NaN'):
        p.push(bad)
    with pytest.raises(mfr_eeg.DenoiseError, match="chunk has 3 channels, the stream 2"):
        p.push(np.zeros((3, 10), dtype=np.float32))
    with pytest.raises(mfr_eeg.DenoiseError, match="no samples"):
        mfr_eeg.Streamer(None, 2, 256.0).finish()
    with pytest.raises(mfr_eeg.DenoiseError, match="--hop 999"):
        mfr_eeg.Streamer(None, 2, 256.0, hop=999)


def test_non_contiguous_and_list_input():
    x = _signal(4, 700, seed=4)
    np.testing.assert_array_equal(mfr_eeg.denoise(x[::2], 256.0), mfr_eeg.denoise(np.ascontiguousarray(x[::2]), 256.0))
    y = mfr_eeg.denoise(x[:1].tolist(), 256.0)
    assert y.dtype == np.float64 and y.shape == (1, 700)


def test_the_gil_is_released_during_work():
    x = _signal(64, 256 * 60, seed=5)
    span = {}

    def work():
        span["start"] = time.perf_counter()
        mfr_eeg.denoise(x, 256.0, threads=1)
        span["end"] = time.perf_counter()

    th = threading.Thread(target=work)
    th.start()
    # This thread keeps running Python while the work runs: its longest pause would cover the
    # whole call if the GIL were held, and is a scheduling slice when it is released.
    last = time.perf_counter()
    longest = 0.0
    while th.is_alive():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    th.join()
    call = span["end"] - span["start"]
    assert call > 0.2, f"work too short to tell ({call:.3f} s)"
    assert longest < call / 2, f"main thread paused {longest:.2f} s of a {call:.2f} s call"


def _blink_montage(seconds=40.0, sfreq=256.0, seed=0):
    """8 channels of independent noise-like EEG plus blinks with a fixed topography, and a
    VEOG channel that sees the blink; returns (x [9, n], names, blink, topography)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    brain = np.stack([sum(rng.uniform(2, 6) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in rng.uniform(2, 30, 20)) for _ in range(8)])
    blink = np.zeros(n)
    start = 1.5
    while start < seconds - 1.0:
        i, m = int(start * sfreq), int(rng.uniform(0.3, 0.45) * sfreq)
        blink[i:i + m] += rng.uniform(100, 200) * np.sin(np.pi * np.arange(m) / m) ** 2
        start += rng.uniform(2.5, 5.0)
    topo = np.array([1.0, 0.9, 0.55, 0.45, 0.2, 0.18, 0.05, 0.04])
    x = np.vstack([brain + topo[:, None] * blink, 1.5 * blink + rng.normal(0, 1, n)]).astype(np.float32)
    return x, ["Fp1", "Fp2", "F7", "F8", "C3", "C4", "O1", "O2", "VEOG"], blink, topo


def test_eye_stream_removes_blinks_in_chunks_and_keeps_the_eog_channel():
    x, names, blink, topo = _blink_montage()
    s = mfr_eeg.EyeStream(names, 256.0)
    assert s.references == "EOG channels VEOG" and s.latency == 128 and s.latency_s == 0.5
    rng = np.random.default_rng(1)
    parts, at = [], 0
    while at < x.shape[1]:
        m = int(rng.integers(0, 900))
        parts.append(s.push(x[:, at:at + m]))
        at += m
    parts.append(s.finish())
    y = np.concatenate(parts, axis=1)
    assert y.shape == x.shape and y.dtype == np.float32 and s.active
    whole = mfr_eeg.EyeStream(names, 256.0)
    np.testing.assert_array_equal(y, np.concatenate([whole.push(x), whole.finish()], axis=1))
    np.testing.assert_array_equal(y[8], x[8])
    # After 5 s, the blink left on Fp1 is under 10 % of the blink there.
    after = slice(5 * 256, None)
    clean = x[0] - topo[0] * blink
    left = np.sqrt(np.sum((y[0, after] - clean[after]) ** 2) / np.sum((topo[0] * blink[after]) ** 2))
    assert left < 0.1, left
    with pytest.raises(mfr_eeg.DenoiseError, match="no EOG channel and no frontal"):
        mfr_eeg.EyeStream(["C3", "C4"], 256.0)


def test_denoise_file_runs_the_eye_stage_as_the_cli_does(cli, tmp_path):
    import subprocess

    from conftest import ROOT

    edf = ROOT / "data" / "eeglab_tutorial_32ch_128Hz_238s.edf"
    want = tmp_path / "cli.edf"
    r = subprocess.run([str(cli), "denoise", str(edf), str(want)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = mfr_eeg.denoise_file(edf, tmp_path / "py.edf")
    assert (tmp_path / "py.edf").read_bytes() == want.read_bytes()
    assert s["eye"].startswith("EOG channels EOG1, EOG2: 30 channels through") and "blink source found" in s["eye"]
    off = mfr_eeg.denoise_file(edf, tmp_path / "off.edf", spatial=False)
    assert off["eye"] is None
    assert (tmp_path / "off.edf").read_bytes() != want.read_bytes()
    with pytest.raises(mfr_eeg.DenoiseError, match="spatial=False skips it"):
        mfr_eeg.denoise_file(edf, tmp_path / "x.edf", spatial=False, eog=["EOG1"])


def test_denoise_file_gate_options_are_the_clis(cli, tmp_path):
    import subprocess

    from conftest import ROOT

    edf = ROOT / "data" / "spkit_emotiv_14ch_128Hz_16s_blink.edf"
    for args, kw in [
        (["--keep-slow"], dict(keep_slow=True)),
        (["--gate", "0.25,0.75", "--gate-slow", "0.125,0.625,32"], dict(gate="0.25,0.75", gate_slow="0.125,0.625,32")),
        (["--gate", "model"], dict(gate="model")),
        (["--gate", "off"], dict(gate="off")),
    ]:
        want = tmp_path / "cli.edf"
        r = subprocess.run([str(cli), "denoise", str(edf), str(want), *args], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        mfr_eeg.denoise_file(edf, tmp_path / "py.edf", **kw)
        assert (tmp_path / "py.edf").read_bytes() == want.read_bytes(), args
    mfr_eeg.denoise_file(edf, tmp_path / "default.edf")
    assert (tmp_path / "default.edf").read_bytes() != (tmp_path / "py.edf").read_bytes()
    for kw, msg in [
        (dict(gate="0.6,0.2"), "--gate 0.6,0.2"),
        (dict(gate_slow="0.1,0.2,3"), "--gate-slow needs --gate"),
        (dict(keep_slow=True, gate="0.1,0.2", gate_slow="0.1,0.2,3"), "--keep-slow"),
    ]:
        with pytest.raises(mfr_eeg.DenoiseError, match=msg):
            mfr_eeg.denoise_file(edf, tmp_path / "x.edf", **kw)
    assert not (tmp_path / "x.edf").exists()


def test_denoise_arrays_take_the_gate_options():
    rng = np.random.default_rng(4)
    t = np.arange(2560) / 256.0
    x = np.stack([20 * np.sin(2 * np.pi * 10 * t) + 5 * rng.standard_normal(t.size) for _ in range(2)]).astype(np.float32)
    default = mfr_eeg.denoise(x, 256.0)
    off = mfr_eeg.denoise(x, 256.0, gate="off")
    keep = mfr_eeg.denoise(x, 256.0, keep_slow=True)
    hard = mfr_eeg.denoise(x, 256.0, gate="0.425,0.625")
    assert not np.array_equal(off, default) and not np.array_equal(keep, default)
    # Arrays have no eye stage: the default is the model's gate; "after-eye" is the gate
    # `denoise` gives the channels its eye stage cleans.
    assert np.array_equal(mfr_eeg.denoise(x, 256.0, gate="model"), default)
    assert not np.array_equal(mfr_eeg.denoise(x, 256.0, gate="after-eye"), default)
    # A harder gate leaves more of the input as it was.
    assert np.abs(hard - x).mean() < np.abs(default - x).mean() < np.abs(off - x).mean()
    with pytest.raises(mfr_eeg.DenoiseError, match="--gate 0.6,0.2"):
        mfr_eeg.denoise(x, 256.0, gate="0.6,0.2")
    # A Streamer with the same options gives the same samples.
    s = mfr_eeg.Streamer(None, 2, 256.0, keep_slow=True)
    streamed = np.concatenate([s.push(x[:, :1000]), s.push(x[:, 1000:]), s.finish()], axis=1)
    assert np.array_equal(streamed, keep)
