#!/usr/bin/env python3
"""Measures how the generator's artifacts differ from recorded ones.

1. EMG: median frequency and band-power shares of the recorded surface EMG of the real-data
   set (data/real/emg, built by scripts/real_data.py; resampled to 256 Hz as the benchmark
   does) against the generator's EMG spectrum (the formula of src/eval/data.rs, `artifact`,
   EMG arm: noise shaped by ramp(f,15,25) * (1 - ramp(f, hi-10, hi)) * (1 + exp(-((f-p)/30)^2)),
   p uniform in 40-80 Hz, hi = min(150, 0.49 fs)).
2. Blinks: the width (full width at half maximum), rise and fall times of the generator's
   blink (amp * u^k exp(k(1-u)), u = (t - t0)/tau, tau 0.12-0.2 s, k 2-3.5) against the large
   eye/movement event of the spkit Emotiv segment (../shared/data, `blink_seg_raw`), and that
   event's spread over the scalp (frontal vs occipital amplitude).

Usage: python3 scripts/artifact_shapes.py [--real data/real] [--spkit PATH.npz]
Prints a markdown table; needs numpy only.
"""

import argparse
import glob
import os

import numpy as np


def read_edf(path):
    """Minimal reader for the plain EDF files scripts/real_data.py writes."""
    with open(path, "rb") as f:
        h = f.read(256)
        ns = int(h[252:256])
        s = f.read(256 * ns)
        def col(off, w):
            return [s[off * ns + i * w: off * ns + (i + 1) * w].decode().strip() for i in range(ns)]
        # Field offsets in units of ns: label 16, transducer 80, dim 8, pmin 8, pmax 8,
        # dmin 8, dmax 8, prefilter 80, samples 8.
        offs = np.cumsum([0, 16, 80, 8, 8, 8, 8, 8, 80])
        pmin = np.array(col(offs[3], 8), float)
        pmax = np.array(col(offs[4], 8), float)
        dmin = np.array(col(offs[5], 8), float)
        dmax = np.array(col(offs[6], 8), float)
        nsamp = np.array(col(offs[8], 8), int)
        nrec = int(h[236:244])
        dur = float(h[244:252])
        raw = np.frombuffer(f.read(), "<i2").reshape(nrec, nsamp.sum())
    gain = (pmax - pmin) / (dmax - dmin)
    out, o = [], 0
    for c in range(ns):
        d = raw[:, o:o + nsamp[c]].reshape(-1).astype(float)
        out.append(pmin[c] + (d - dmin[c]) * gain[c])
        o += nsamp[c]
    return np.array(out), nsamp[0] / dur


def resample(x, fs_in, fs_out):
    n_out = int(round(len(x) * fs_out / fs_in))
    X = np.fft.rfft(x - x.mean())
    m = n_out // 2 + 1
    Y = np.zeros(m, complex)
    k = min(m, len(X))
    Y[:k] = X[:k]
    return np.fft.irfft(Y, n_out) * n_out / len(x)


def spectrum_stats(f, p):
    p = p / p.sum()
    c = np.cumsum(p)
    med = f[np.searchsorted(c, 0.5)]
    share = lambda lo, hi: p[(f >= lo) & (f < hi)].sum()
    return med, share(1, 20), share(20, 60), share(60, 128)


def welch(x, fs, n=256):
    w = np.hanning(n)
    segs = [x[i:i + n] * w for i in range(0, len(x) - n + 1, n // 2)]
    return np.fft.rfftfreq(n, 1 / fs), np.mean([abs(np.fft.rfft(s)) ** 2 for s in segs], 0)


def ramp(f, a, b):
    return np.clip((f - a) / (b - a), 0, 1)


def emg_rows(real):
    fs = 256.0
    rows = []
    for path in sorted(glob.glob(os.path.join(real, "emg", "*.edf"))):
        x, fs_in = read_edf(path)
        y = resample(x[0], fs_in, fs)
        # 1 Hz high-pass as the benchmark's EMG epochs (band 1-120 Hz)
        Y = np.fft.rfft(y)
        fr = np.fft.rfftfreq(len(y), 1 / fs)
        Y[(fr < 1) | (fr > 120)] = 0
        y = np.fft.irfft(Y, len(y))
        # active half only, as emg_epochs keeps
        e = y[: len(y) // 512 * 512].reshape(-1, 512)
        r = np.sqrt((e ** 2).mean(1))
        act = e[r >= np.median(r)].reshape(-1)
        f, p = welch(act, fs)
        rows.append((os.path.basename(path),) + spectrum_stats(f, p))
    rng = np.random.default_rng(0)
    f = np.fft.rfftfreq(256, 1 / fs)
    ps = []
    for _ in range(200):
        pk = rng.uniform(40, 80)
        hi = min(150.0, 0.49 * fs)
        g = ramp(f, 15, 25) * (1 - ramp(f, hi - 10, hi)) * (1 + np.exp(-((f - pk) / 30) ** 2))
        ps.append(g ** 2)
    rows.append(("generator (mean of 200 draws)",) + spectrum_stats(f, np.mean(ps, 0)))
    return rows


def widths(x, fs):
    """FWHM, 10-90 % rise and 90-10 % fall of the largest |deflection| in x (s)."""
    i = int(np.argmax(abs(x)))
    s = np.sign(x[i])
    y = s * x / abs(x[i])
    def cross(level, step):
        j = i
        while 0 < j < len(y) - 1 and y[j] > level:
            j += step
        return j
    fwhm = (cross(0.5, 1) - cross(0.5, -1)) / fs
    rise = (cross(0.1, -1) - cross(0.9, -1)) / fs
    fall = (cross(0.1, 1) - cross(0.9, 1)) / fs
    return abs(fwhm), abs(rise), abs(fall)


def blink_rows(spkit):
    fs = 128.0
    rows = []
    rng = np.random.default_rng(0)
    gen = []
    for _ in range(500):
        tau, k = rng.uniform(0.12, 0.2), rng.uniform(2.0, 3.5)
        t = np.arange(0, 2, 1 / fs)
        u = t / tau
        gen.append(widths(np.where(u > 0, u ** k * np.exp(k * (1 - u)), 0), fs))
    g = np.array(gen)
    rows.append(("generator blink (500 draws), median [5-95 %]",) + tuple(
        f"{np.median(g[:, j]):.3f} [{np.percentile(g[:, j], 5):.3f}-{np.percentile(g[:, j], 95):.3f}]"
        for j in range(3)))
    if spkit and os.path.exists(spkit):
        d = np.load(spkit)
        x = d["blink_seg_raw"]
        names = list(d["ch_names"])
        x = x - np.median(x, 0)
        seg = x[int(9.5 * fs):int(11.5 * fs)]
        for ch in ["AF3", "AF4", "O1", "O2"]:
            c = seg[:, names.index(ch)]
            rows.append((f"spkit event, {ch} (peak {c[np.argmax(abs(c))]:.0f} uV)",) + tuple(
                f"{v:.3f}" for v in widths(c, fs)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", default="data/real")
    ap.add_argument("--spkit", default="../shared/data/spkit_emotiv_14ch_128Hz_16s.npz")
    a = ap.parse_args()
    print("| EMG source (256 Hz, 1-120 Hz, active half) | median freq (Hz) | power 1-20 Hz | 20-60 Hz | 60-128 Hz |")
    print("|---|---|---|---|---|")
    for r in emg_rows(a.real):
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} |")
    print()
    print("| eye event | FWHM (s) | rise 10-90 % (s) | fall 90-10 % (s) |")
    print("|---|---|---|---|")
    for r in blink_rows(a.spkit):
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
