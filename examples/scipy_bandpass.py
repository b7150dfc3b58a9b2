"""Times SciPy's zero-phase band-pass of every signal of a 16-bit EDF file: the reference the
batched denoiser is compared with (examples/speed_frontier.rs measures the Rust side).

    python3 examples/scipy_bandpass.py /tmp/hour64.edf
    python3 examples/scipy_bandpass.py /tmp/hour64.edf /tmp/hour64-bandpass.edf

Reads the samples with numpy alone (plain EDF, 16-bit, every signal at the same rate) and,
channel by channel, converts them to physical units in float64 and runs butter(4, [1, 40],
'bandpass', output='sos') + sosfiltfilt, on one thread (SciPy's filters are single-threaded).
Prints wall and CPU seconds of the filtering. With an output path it also writes the filtered
signals as an EDF file (the input's header, samples rounded and clipped to each signal's
digital range) and prints the seconds of the whole run from reading to the written file: the
measure to set beside `mfr-eeg denoise IN OUT`, which reads and writes its files too. Channel by
channel on purpose: converting the whole recording to float64 at once and back takes 3-4x as
long, in memory traffic alone."""

import sys
import time

import numpy as np
import scipy
from scipy import signal


def main():
    start_w, start_c = time.perf_counter(), time.process_time()
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    ns = int(raw[252:256])
    hb = 256 + 256 * ns

    def field(off, width):
        base = 256 + off * ns
        return [raw[base + i * width: base + (i + 1) * width].decode().strip() for i in range(ns)]

    pmin = np.array(field(104, 8), float)
    pmax = np.array(field(112, 8), float)
    dmin = np.array(field(120, 8), float)
    dmax = np.array(field(128, 8), float)
    spr = np.array(field(216, 8), int)
    dur = float(raw[244:252])
    assert (spr == spr[0]).all(), "one rate only"
    spr = spr[0]
    fs = spr / dur
    gain = (pmax - pmin) / (dmax - dmin)
    d = np.frombuffer(raw, "<i2", offset=hb).reshape(-1, ns, spr)
    out = np.empty_like(d)
    sos = signal.butter(4, [1.0, 40.0], "bandpass", fs=fs, output="sos")
    w = c = 0.0
    for i in range(ns):
        x = d[:, i, :].ravel() * gain[i] + (pmin[i] - dmin[i] * gain[i])
        w0, c0 = time.perf_counter(), time.process_time()
        y = signal.sosfiltfilt(sos, x)
        w, c = w + time.perf_counter() - w0, c + time.process_time() - c0
        q = np.rint((y - pmin[i]) / gain[i] + dmin[i])
        np.clip(q, dmin[i], dmax[i], out=q)
        out[:, i, :] = q.reshape(-1, spr)
    secs = d.shape[0] * dur
    print(f"{ns} channels x {secs:.0f} s at {fs:g} Hz: SciPy {scipy.__version__} "
          f"sosfiltfilt order 4, 1-40 Hz: wall {w:.2f} s, CPU {c:.2f} s")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "wb") as f:
            f.write(raw[:hb])
            f.write(out.tobytes())
        w, c = time.perf_counter() - start_w, time.process_time() - start_c
        print(f"file to file (read, filter, write {sys.argv[2]}): wall {w:.2f} s, CPU {c:.2f} s")


if __name__ == "__main__":
    main()
