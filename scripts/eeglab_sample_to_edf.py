#!/usr/bin/env python3
"""Writes EEGLAB's tutorial recording (32 channels with two EOG channels, real blinks) as EDF.

Input: `sample_data/eeglab_data.set` and `eeglab_data.fdt` of the EEGLAB repository
(github.com/sccn/eeglab, BSD 2-Clause): the .set is a MATLAB file with the header (32 channels,
128 Hz, 30504 samples, labels FPz EOG1 F3 ... O2), the .fdt the samples as little-endian float32,
channels varying fastest, in microvolts. Output: one plain EDF file, 238 records of 1 s (the
last 0.3 s, less than a record, is dropped), 16-bit, each channel's physical range its own
min/max rounded out to whole microvolts (resolution below 0.02 uV). Needs numpy and scipy.

Usage: scripts/eeglab_sample_to_edf.py DIR_WITH_SET_AND_FDT data/
"""
import sys
from pathlib import Path

import numpy as np
import scipy.io

FS = 128
OUT = "eeglab_tutorial_32ch_128Hz_238s.edf"


def field(s, n):
    s = str(s)
    if len(s) > n:
        raise ValueError(f"{s!r} longer than {n}")
    return s.ljust(n).encode("ascii")


def num(x, n):
    s = f"{x:.6g}" if isinstance(x, float) else str(x)
    return field(s[:n], n)


def write_edf(path, data_uv, labels, recording):
    n, ns = data_uv.shape
    records = n // FS
    data_uv = data_uv[: records * FS]
    pmin = np.floor(data_uv.min(axis=0)) - 1.0
    pmax = np.ceil(data_uv.max(axis=0)) + 1.0
    dmin, dmax = -32768, 32767
    head = b"".join([
        field("0", 8), field("X X X X", 80), field(recording, 80), field("01.01.01", 8),
        field("00.00.00", 8), num(256 + 256 * ns, 8), field("", 44), num(records, 8), num(1, 8),
        num(ns, 4),
    ])
    per = lambda vals, width: b"".join(num(v, width) if not isinstance(v, str) else field(v, width) for v in vals)
    types = ["EOG electrode" if l.startswith("EOG") else "EEG electrode" for l in labels]
    head += per(labels, 16) + per(types, 80) + per(["uV"] * ns, 8)
    head += per([float(v) for v in pmin], 8) + per([float(v) for v in pmax], 8)
    head += per([dmin] * ns, 8) + per([dmax] * ns, 8) + per(["HP:none LP:none"] * ns, 80)
    head += per([FS] * ns, 8) + per([""] * ns, 32)
    assert len(head) == 256 + 256 * ns
    # Parse back the printed ranges so the digital values use exactly the header's scale.
    pmin_h = np.array([float(num(float(v), 8)) for v in pmin])
    pmax_h = np.array([float(num(float(v), 8)) for v in pmax])
    gain = (pmax_h - pmin_h) / (dmax - dmin)
    dig = np.round((data_uv - pmin_h) / gain + dmin).astype(np.int64)
    assert dig.min() >= dmin and dig.max() <= dmax
    body = dig.astype("<i2").reshape(records, FS, ns).transpose(0, 2, 1).tobytes()
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(head + body)
    tmp.replace(path)


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    eeg = scipy.io.loadmat(src / "eeglab_data.set", squeeze_me=True, struct_as_record=False)["EEG"]
    ns, n = int(eeg.nbchan), int(eeg.pnts)
    assert (ns, n, float(eeg.srate)) == (32, 30504, float(FS)), (ns, n, eeg.srate)
    labels = [str(c.labels) for c in eeg.chanlocs]
    raw = np.fromfile(src / "eeglab_data.fdt", dtype="<f4")
    assert raw.size == ns * n, raw.size
    x = raw.reshape(n, ns).astype(np.float64)
    dest = out / OUT
    write_edf(dest, x, labels, "EEGLAB tutorial dataset (sccn/eeglab sample_data)")
    print(dest)


if __name__ == "__main__":
    main()
