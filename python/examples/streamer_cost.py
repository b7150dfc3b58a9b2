"""CPU cost of ``mfr_eeg.Streamer`` next to ``mfr_eeg.denoise`` on the shipped recording.

Streams the 64-channel, 160 Hz EEGMMIDB file in 16-sample chunks at two block lengths, checks
that the output equals ``denoise`` bit for bit, and prints CPU seconds and the latency.
Run from the repository root: ``python python/examples/streamer_cost.py``.
"""

import time

import mne
import numpy as np

import mfr_eeg

raw = mne.io.read_raw_edf("data/eegmmidb_S001R02_64ch_160Hz_61s.edf", preload=True, verbose=False)
x = (raw.get_data() * 1e6).astype(np.float32)
fs = raw.info["sfreq"]
t0 = time.process_time()
y = mfr_eeg.denoise(x, fs, threads=1)
whole = time.process_time() - t0
for block in (1.0, 4.0):
    s = mfr_eeg.Streamer(None, x.shape[0], fs, block_seconds=block)
    t0 = time.process_time()
    outs = [s.push(x[:, i : i + 16]) for i in range(0, x.shape[1], 16)] + [s.finish()]
    streamed = time.process_time() - t0
    assert np.array_equal(np.concatenate(outs, axis=1), y)
    print(
        f"block {block} s: denoise {whole:.2f} s CPU, Streamer {streamed:.2f} s CPU "
        f"({streamed / whole:.1f}x), latency {s.latency_s:.2f} s, output equal"
    )
