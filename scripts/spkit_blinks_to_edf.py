#!/usr/bin/env python3
"""Writes spkit's two real 14-channel Emotiv segments with blinks as plain EDF files.

Input: spkit_emotiv_14ch_128Hz_16s.npz (arrays `blink_seg_raw` and `artifact_seg_raw`, shape
(2048, 14), microvolts; converted from the PyPI package spkit 0.0.9.7, files
spkit/data/files/EEG16SecData.pkl and EEG16sec_artifact.pkl). Output: two 16 s EDF files,
16 records of 1 s, 128 Hz, 16-bit, each channel's physical range its own min/max rounded out to
whole microvolts (resolution ~0.01 uV). Needs numpy only.

Usage: scripts/spkit_blinks_to_edf.py ../shared/data/spkit_emotiv_14ch_128Hz_16s.npz data/
"""
import sys
from pathlib import Path

import numpy as np

LABELS = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]
FS = 128


def field(s, n):
    s = str(s)
    if len(s) > n:
        raise ValueError(f"{s!r} longer than {n}")
    return s.ljust(n).encode("ascii")


def num(x, n):
    s = f"{x:.6g}" if isinstance(x, float) else str(x)
    return field(s[:n], n)


def write_edf(path, data_uv, recording, labels=LABELS, fs=FS, transducers=None, prefilter="HP:0.16Hz LP:43Hz"):
    """Plain EDF of `data_uv` [samples, channels] in uV, 1 s records (a last partial second is
    dropped), 16-bit, each channel's physical range its own min/max rounded out to whole uV."""
    n, ns = data_uv.shape
    records = n // fs
    data_uv = data_uv[: records * fs]
    pmin = np.floor(data_uv.min(axis=0)) - 1.0
    pmax = np.ceil(data_uv.max(axis=0)) + 1.0
    dmin, dmax = -32768, 32767
    head = b"".join([
        field("0", 8), field("X X X X", 80), field(recording, 80), field("01.01.01", 8),
        field("00.00.00", 8), num(256 + 256 * ns, 8), field("", 44), num(records, 8), num(1, 8),
        num(ns, 4),
    ])
    per = lambda vals, width: b"".join(num(v, width) if not isinstance(v, str) else field(v, width) for v in vals)
    head += per(labels, 16) + per(transducers or ["AgCl electrode"] * ns, 80) + per(["uV"] * ns, 8)
    head += per([float(v) for v in pmin], 8) + per([float(v) for v in pmax], 8)
    head += per([dmin] * ns, 8) + per([dmax] * ns, 8) + per([prefilter] * ns, 80)
    head += per([fs] * ns, 8) + per([""] * ns, 32)
    assert len(head) == 256 + 256 * ns
    # Parse back the printed ranges so the digital values use exactly the header's scale.
    pmin_h = np.array([float(num(float(v), 8)) for v in pmin])
    pmax_h = np.array([float(num(float(v), 8)) for v in pmax])
    gain = (pmax_h - pmin_h) / (dmax - dmin)
    dig = np.round((data_uv - pmin_h) / gain + dmin).astype(np.int64)
    assert dig.min() >= dmin and dig.max() <= dmax
    body = dig.astype("<i2").reshape(records, fs, ns).transpose(0, 2, 1).tobytes()
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(head + body)
    tmp.replace(path)


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    z = np.load(src)
    for key, name in [("blink_seg_raw", "blink"), ("artifact_seg_raw", "artifact")]:
        x = np.asarray(z[key], dtype=np.float64)
        assert x.shape == (2048, 14), x.shape
        dest = out / f"spkit_emotiv_14ch_128Hz_16s_{name}.edf"
        write_edf(dest, x, f"spkit PhyAAt Emotiv 14ch {name} segment")
        print(dest)


if __name__ == "__main__":
    main()
