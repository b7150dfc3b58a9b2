#!/usr/bin/env python3
"""Each blink's share of `eog-check`'s "blink kept" value, for one cleaned recording.

    python3 scripts/blink_shares.py RAW.edf CLEANED.edf [--ref EOG1]

Blinks are found as `eog-check` finds them (the reference band-passed to 1-8 Hz, samples beyond
5 robust standard deviations, events merged within 0.5 s, epochs of +-0.5 s). "Blink kept" is
the least-squares coefficient of the cleaned blink-locked average (1-8 Hz, every EEG channel
but the references) on the raw one; it is a sum over blinks, and this prints each blink's term
with its time and how well its raw topography at the peak matches the average blink's
(correlation), so one can see which blinks a method leaves. Zero-phase filters here are SciPy's
4th-order Butterworth, so the total can differ from `eog-check`'s in the third decimal.

Needs numpy, scipy and pyedflib (`pip install numpy scipy pyedflib`).
"""

from __future__ import annotations

import argparse

import numpy as np
import pyedflib
from scipy import signal


def load(path: str) -> tuple[list[str], np.ndarray, float]:
    f = pyedflib.EdfReader(path)
    try:
        labels = [s.strip() for s in f.getSignalLabels()]
        data = np.array([f.readSignal(i) for i in range(f.signals_in_file)])
        return labels, data, f.getSampleFrequency(0)
    finally:
        f.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw")
    p.add_argument("cleaned")
    p.add_argument("--ref", default="EOG1", help="blink reference channel(s), comma-separated (their mean)")
    p.add_argument("--exclude", default="EOG1,EOG2", help="channels left out of the average")
    a = p.parse_args()
    labels, raw, fs = load(a.raw)
    clabels, cleaned, _ = load(a.cleaned)
    refs = a.ref.split(",")
    ref = raw[[labels.index(r) for r in refs]].mean(axis=0)
    keep = [l for l in labels if l not in a.exclude.split(",") and l not in refs and l in clabels]
    sos = signal.butter(4, [1.0, 8.0], btype="band", fs=fs, output="sos")
    band = lambda x: signal.sosfiltfilt(sos, x, axis=-1)  # noqa: E731
    r18 = band(ref)
    x = band(raw[[labels.index(l) for l in keep]])
    y = band(cleaned[[clabels.index(l) for l in keep]])
    med = np.median(r18)
    limit = 5.0 * 1.4826 * np.median(np.abs(r18 - med))
    half = int(round(0.5 * fs))
    peaks: list[int] = []
    last = None
    for i in np.nonzero(np.abs(r18 - med) > limit)[0]:
        if last is not None and peaks and i - last <= half:
            if abs(r18[i] - med) > abs(r18[peaks[-1]] - med):
                peaks[-1] = i
        else:
            peaks.append(int(i))
        last = i
    peaks = [q for q in peaks if half <= q < len(r18) - half]
    if not peaks:
        raise SystemExit(f"{a.raw}: no blink on {a.ref}")
    epoch = lambda z, q: z[:, q - half : q + half + 1]  # noqa: E731
    avg = np.mean([epoch(x, q) for q in peaks], axis=0)
    den = float((avg**2).sum()) * len(peaks)
    print(f"{a.cleaned}: {len(peaks)} blinks on {a.ref}, {len(keep)} channels")
    print("time (s) | topography corr | share of blink kept")
    total = 0.0
    for q in peaks:
        share = float((epoch(y, q) * avg).sum()) / den
        total += share
        topo = np.corrcoef(x[:, q], avg[:, half])[0, 1]
        print(f"{q / fs:8.1f} | {topo:+.2f} | {share:+.4f}")
    print(f"blink kept: {total:.3f}")


if __name__ == "__main__":
    main()
