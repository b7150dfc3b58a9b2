"""Real-time denoising over Lab Streaming Layer (pylsl), measured end to end.

Three parts in one process, talking only through LSL:
1. a replayer: an outlet "mfr-raw" that plays the shipped EEGMMIDB recording (8 channels,
   resampled by MNE to the model's 256 Hz) in real time, 16-sample chunks;
2. a cleaner: an inlet on "mfr-raw", a ``mfr_eeg.CoreStreamer``, an outlet "mfr-clean" whose chunks
   carry the LSL timestamp of the newest raw sample they were computed from;
3. a consumer: an inlet on "mfr-clean" that measures, per chunk, receive time minus that
   timestamp (transport + denoising + queueing).

The denoised sample ``i`` is the clean estimate of raw sample ``i - latency`` (255 samples =
0.996 s at 256 Hz, the overlap-add window), so the end-to-end delay of the signal is that
algorithmic latency plus the measured part.

Run it confined to this machine: with LSLAPICFG pointing at ``lsl_api.cfg`` (machine scope,
KnownPeers 127.0.0.1, IPv6 off) and, on Linux as root, inside a network namespace that has only
the loopback interface, where no packet can leave::

    unshare -n sh -c 'ip link set lo up && LSLAPICFG=python/examples/lsl_api.cfg \\
        python python/examples/lsl_realtime.py --seconds 20'
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

import mfr_eeg

ROOT = Path(__file__).resolve().parents[2]
EDF = ROOT / "data" / "eegmmidb_S001R02_64ch_160Hz_61s.edf"
CHUNK = 16


def load(n_channels: int, seconds: float) -> np.ndarray:
    import mne

    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    raw.pick(raw.ch_names[:n_channels]).crop(0, seconds).resample(256.0, verbose="error")
    return (raw.get_data() * 1e6).astype(np.float32)  # [channels, samples], uV


def replay(pylsl, x: np.ndarray, stop: threading.Event) -> None:
    info = pylsl.StreamInfo("mfr-raw", "EEG", x.shape[0], 256.0, "float32", "mfr-raw-src")
    out = pylsl.StreamOutlet(info, chunk_size=CHUNK)
    while not out.wait_for_consumers(0.1):
        if stop.is_set():
            return
    t0 = time.perf_counter()
    for k in range(0, x.shape[1], CHUNK):
        # Real-time pacing: chunk k is due k / 256 s after the start.
        time.sleep(max(0.0, t0 + k / 256.0 - time.perf_counter()))
        out.push_chunk(np.ascontiguousarray(x[:, k : k + CHUNK].T).tolist())
        if stop.is_set():
            return


def clean(pylsl, n_channels: int, stop: threading.Event, ready: threading.Event) -> None:
    streams = pylsl.resolve_byprop("name", "mfr-raw", timeout=10.0)
    if not streams:
        raise RuntimeError("mfr-raw not found on this machine")
    inlet = pylsl.StreamInlet(streams[0], max_chunklen=CHUNK)
    info = pylsl.StreamInfo("mfr-clean", "EEG", n_channels, 256.0, "float32", "mfr-clean-src")
    out = pylsl.StreamOutlet(info, chunk_size=CHUNK)
    s = mfr_eeg.CoreStreamer(mfr_eeg.Model.default(), n_channels, 256.0)
    ready.set()
    while not stop.is_set():
        data, stamps = inlet.pull_chunk(timeout=0.2, max_samples=CHUNK)
        if not stamps:
            continue
        y = s.push(np.asarray(data, dtype=np.float32).T)
        out.push_chunk(np.ascontiguousarray(y.T).tolist(), stamps[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", type=Path, help="save the replayed input and the received output (.npz)")
    a = p.parse_args()
    import pylsl

    x = load(a.channels, a.seconds)
    stop, ready = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=clean, args=(pylsl, a.channels, stop, ready), daemon=True),
        threading.Thread(target=replay, args=(pylsl, x, stop), daemon=True),
    ]
    threads[0].start()
    threads[1].start()
    streams = pylsl.resolve_byprop("name", "mfr-clean", timeout=15.0)
    if not streams:
        raise SystemExit("mfr-clean not found on this machine")
    inlet = pylsl.StreamInlet(streams[0], max_chunklen=CHUNK)
    delays, received, chunks = [], 0, []
    deadline = time.monotonic() + a.seconds + 15.0
    while time.monotonic() < deadline:
        data, stamps = inlet.pull_chunk(timeout=1.0, max_samples=CHUNK)
        if not stamps:
            if received:  # the replay has ended
                break
            continue
        now = pylsl.local_clock()
        received += len(stamps)
        delays.append(now - stamps[-1])
        chunks.append(np.asarray(data, dtype=np.float32).T)
    stop.set()
    for t in threads:
        t.join(timeout=2.0)
    d = np.array(delays[len(delays) // 10 :]) * 1e3  # skip the start-up
    algorithmic_ms = 255 / 256.0 * 1e3
    result = {
        "samples_received": received,
        "chunks": len(delays),
        "measured_ms": {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "max": float(d.max())},
        "algorithmic_ms": algorithmic_ms,
        "end_to_end_median_ms": algorithmic_ms + float(np.median(d)),
    }
    if a.save:
        np.savez(a.save, input=x, received=np.concatenate(chunks, axis=1))
    if a.json:
        print(json.dumps(result))
    else:
        m = result["measured_ms"]
        print(f"received {received} samples x {a.channels} channels in {len(delays)} chunks")
        print(f"transport + denoising: median {m['median']:.1f} ms, p95 {m['p95']:.1f} ms, max {m['max']:.1f} ms")
        print(f"end to end: {algorithmic_ms:.0f} ms window latency + {m['median']:.1f} ms = {result['end_to_end_median_ms']:.0f} ms (median)")


if __name__ == "__main__":
    main()
