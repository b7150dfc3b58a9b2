"""Times SciPy's zero-phase band-pass of every signal of a 16-bit EDF file: the reference the
batched denoiser is compared with (examples/speed_frontier.rs measures the Rust side).

    python3 examples/scipy_bandpass.py /tmp/hour64.edf

Reads the samples with numpy alone (plain EDF, 16-bit, every signal at the same rate),
converts them to physical units in float64, and runs butter(4, [1, 40], 'bandpass',
output='sos') + sosfiltfilt per channel, on one thread (SciPy's filters are single-threaded).
Prints wall and CPU seconds."""

import sys
import time

import numpy as np
import scipy
from scipy import signal


def read_edf(path):
    with open(path, "rb") as f:
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
    d = np.frombuffer(raw[hb:], "<i2").reshape(-1, ns, spr[0])
    d = d.transpose(1, 0, 2).reshape(ns, -1).astype(np.float64)
    gain = (pmax - pmin) / (dmax - dmin)
    x = (d - dmin[:, None]) * gain[:, None] + pmin[:, None]
    return x, spr[0] / dur


def main():
    x, fs = read_edf(sys.argv[1])
    sos = signal.butter(4, [1.0, 40.0], "bandpass", fs=fs, output="sos")
    w, c = time.perf_counter(), time.process_time()
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = signal.sosfiltfilt(sos, x[i])
    w, c = time.perf_counter() - w, time.process_time() - c
    secs = x.shape[1] / fs
    print(f"{x.shape[0]} channels x {secs:.0f} s at {fs:g} Hz: SciPy {scipy.__version__} "
          f"sosfiltfilt order 4, 1-40 Hz: wall {w:.2f} s, CPU {c:.2f} s")


if __name__ == "__main__":
    main()
