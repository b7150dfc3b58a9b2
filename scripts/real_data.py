#!/usr/bin/env python3
"""Rebuilds the real-data set used by `mfr-eeg bench --real DIR` from PyPI.

Downloads the MIT-licensed wheel biosignalsnotebooks 0.6.14 with pip (checked by SHA-256),
and converts its biosignalsplux OpenSignals HDF5 recordings to plain EDF, losslessly: the
16-bit (or 12/8-bit) ADC codes become the EDF digital values and the sensor transfer function
becomes the physical range.

    EEG (uV) = (ADC / 2^n - 1/2) * 3 V / 41782 * 1e6      (PLUX EEG sensor, gain 41782)
    EMG (mV) = (ADC / 2^n - 1/2) * 3 V / 1000 * 1e3       (PLUX EMG sensor, gain 1000)

Output (DIR, default data/real, which git ignores):
    DIR/eeg/plux_<recording>.edf   EEG channels of one recording (1000 Hz, uV)
    DIR/emg/plux_<recording>.edf   one surface-EMG channel (1000 Hz, mV)
    DIR/MANIFEST.json              recording -> device, subject note, channels, split
With --extract it also rewrites the small extracts the tests use (data/plux_*_extract*.edf).

Requirements: Python 3, numpy, h5py, pip (network access to PyPI while it runs).
Usage: python3 scripts/real_data.py [--out data/real] [--wheel PATH] [--extract]
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import h5py
import numpy as np

WHEEL = "biosignalsnotebooks-0.6.14-py3-none-any.whl"
WHEEL_SHA256 = "9ba3839680f7364f37a672c2288044f20b7bbbbef74fb3915b6c218c8597cac2"
PREFIX = "biosignalsnotebooks/notebook_files/osf_files/signal_samples/"

# Recording -> (kind, channels to keep (HDF5 names), split). Splits are by recording: no
# recording is in two splits, and each split holds recordings from each of the three EEG
# devices (MAC ...D8:A8:82, ...4D:2D:76, ...3B:46:58). Microphone channels are dropped.
EEG = {
    "eeg_acoustic_a": (["channel_5"], "train"),  # device D8:A8:82, subject 1, auditory task
    "eeg_sample_0cm_h": (["channel_1", "channel_5"], "train"),  # D8:A8:82, O1-O2 line
    "eeg_sample_1cm_h": (["channel_1", "channel_5"], "train"),  # D8:A8:82
    "eeg_sample_0cm_v": (["channel_2"], "train"),  # 4D:2D:76
    "eeg_sample_artefacts_seg2": (["channel_2"], "train"),  # 4D:2D:76, movement artefacts
    "eeg_sample_artefacts_seg3": (["channel_1"], "train"),  # 4D:2D:76, electromagnetic noise
    "eeg_sample_closed_open_eyes": (["channel_1", "channel_5"], "train"),  # 3B:46:58
    "eeg_sample_2cm_h": (["channel_1", "channel_5"], "val"),  # D8:A8:82
    "eeg_sample_1cm_v": (["channel_2"], "val"),  # 4D:2D:76
    "eeg_sample_o": (["channel_1", "channel_5"], "val"),  # 3B:46:58, O1 and O2
    "eeg_acoustic": (["channel_5"], "test"),  # D8:A8:82, subject 2, auditory task
    "eeg_sample_2cm_v": (["channel_2"], "test"),  # 4D:2D:76
    "eeg_sample_p": (["channel_1", "channel_5"], "test"),  # 3B:46:58, P3 and P4
}
# eeg_sample_artefacts_seg1 is already shipped as data/plux_1ch_eeg_motion_artefacts_1000Hz_128s.edf.

# Surface EMG (arm muscles), one channel each, split by recording.
EMG = {
    "emg_fatigue": ("channel_2", "train"),  # 4C:01:B1, biceps, 12 bit
    "emg_1000_hz_16_bits_solo": ("channel_1", "train"),  # D8:A8:82, adductor pollicis
    "emg_1000_hz_8_16_bits": ("channel_6", "val"),  # A7:F9, adductor pollicis, 16 bit
    "emg_bursts": ("channel_3", "test"),  # 3B:46:61, biceps bursts
    "emg_1000_hz_16_bits": ("channel_6", "test"),  # A7:F9, adductor pollicis
}

EEG_GAIN, EMG_GAIN, VCC = 41782.0, 1000.0, 3.0


def fetch_wheel(path):
    if path:
        return path
    d = tempfile.mkdtemp(prefix="mfr-eeg-real-")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", d,
         "biosignalsnotebooks==0.6.14"],
        check=True,
    )
    return os.path.join(d, WHEEL)


def field(s, n):
    b = s.encode("ascii")
    if len(b) > n:
        raise ValueError(f"EDF header field {s!r} longer than {n}")
    return b + b" " * (n - len(b))


def num(v, n=8):
    """Shortest decimal that fits n characters."""
    for p in range(n, -1, -1):
        s = f"{v:.{p}f}"
        if len(s) <= n:
            return s
    raise ValueError(v)


def write_edf(path, labels, digital, bits, scale, unit, fs, patient, recording):
    """Plain EDF, 1 s records; `digital` holds [channels, n] integer codes centred on 0, so
    physical = digital * scale exactly up to the 8-character physical range."""
    fs = int(fs)
    n = digital.shape[1] // fs * fs
    digital = digital[:, :n]
    ns = len(labels)
    dmin, dmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    head = b"".join([
        field("0", 8), field(patient, 80), field(recording, 80),
        field("01.01.19", 8), field("00.00.00", 8), field(str(256 * (ns + 1)), 8),
        field("", 44), field(str(n // fs), 8), field("1", 8), field(str(ns), 4),
    ])
    cols = [
        [field(l, 16) for l in labels],
        [field("AgAgCl electrode", 80) for _ in labels],
        [field(unit, 8) for _ in labels],
        [field(num(dmin * scale), 8) for _ in labels],
        [field(num(dmax * scale), 8) for _ in labels],
        [field(str(max(dmin, -32768)), 8) for _ in labels],
        [field(str(min(dmax, 32767)), 8) for _ in labels],
        [field("HP:none LP:none", 80) for _ in labels],
        [field(str(fs), 8) for _ in labels],
        [field("", 32) for _ in labels],
    ]
    head += b"".join(b"".join(c) for c in cols)
    assert len(head) == 256 * (ns + 1)
    rec = digital.reshape(ns, n // fs, fs).transpose(1, 0, 2).astype("<i2")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        f.write(rec.tobytes())
    os.replace(tmp, path)


def channel(h5, name):
    mac = next(iter(h5.keys()))
    for m in h5.keys():
        if name in h5[m]["raw"]:
            mac = m
            break
    g = h5[mac]
    bits = dict(zip([f"channel_{c}" for c in g.attrs["channels"]], g.attrs["resolution"]))
    return mac, int(g.attrs["sampling rate"]), int(bits[name]), np.asarray(
        g["raw"][name][:, 0], dtype=np.int64)


def convert(wheel, out, extract):
    os.makedirs(os.path.join(out, "eeg"), exist_ok=True)
    os.makedirs(os.path.join(out, "emg"), exist_ok=True)
    manifest = {"source": f"PyPI {WHEEL} (MIT)", "eeg": {}, "emg": {}}
    with zipfile.ZipFile(wheel) as z:
        def h5(name):
            return h5py.File(io.BytesIO(z.read(PREFIX + name + ".h5")), "r")

        def info(name):
            return json.loads(z.read(PREFIX + name + "_info.json"))

        for rec, (chans, split) in EEG.items():
            f = h5(rec)
            rows, macs, fs_all, bits_all = [], set(), set(), set()
            for c in chans:
                mac, fs, bits, adc = channel(f, c)
                rows.append(adc - (1 << (bits - 1)))
                macs.add(mac)
                fs_all.add(fs)
                bits_all.add(bits)
            assert len(fs_all) == 1 and len(bits_all) == 1
            bits = bits_all.pop()
            scale = VCC / (1 << bits) / EEG_GAIN * 1e6
            labels = [f"EEG {c.replace('channel_', 'ch')}" for c in chans]
            path = os.path.join(out, "eeg", f"plux_{rec}.edf")
            write_edf(path, labels, np.stack(rows), 16, scale, "uV", fs_all.pop(),
                      "X X X X", f"biosignalsnotebooks {rec}")
            manifest["eeg"][rec] = {"file": os.path.relpath(path, out), "device": sorted(macs),
                                    "channels": labels, "split": split,
                                    "note": info(rec).get("Observations", "")}
        for rec, (c, split) in EMG.items():
            mac, fs, bits, adc = channel(h5(rec), c)
            scale = VCC / (1 << bits) / EMG_GAIN * 1e3
            path = os.path.join(out, "emg", f"plux_{rec}.edf")
            write_edf(path, ["EMG"], (adc - (1 << (bits - 1)))[None, :], 16, scale, "mV", fs,
                      "X X X X", f"biosignalsnotebooks {rec}")
            manifest["emg"][rec] = {"file": os.path.relpath(path, out), "device": [mac],
                                    "split": split,
                                    "note": info(rec).get("Observations", "")}
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    if extract:
        # Small held-out extracts for the regression test: 40 s of test-split EEG from two
        # devices and 20 s of test-split EMG (the first seconds are skipped: electrode settling).
        with zipfile.ZipFile(wheel) as z:
            f = h5py.File(io.BytesIO(z.read(PREFIX + "eeg_sample_p.h5")), "r")
            _, fs, bits, a = channel(f, "channel_1")
            _, _, _, b = channel(f, "channel_5")
            d = np.stack([a, b])[:, 10 * fs:50 * fs] - (1 << (bits - 1))
            write_edf("data/plux_2ch_eeg_p3p4_1000Hz_40s.edf", ["EEG P3", "EEG P4"], d, 16,
                      VCC / (1 << bits) / EEG_GAIN * 1e6, "uV", fs, "X X X X",
                      "biosignalsnotebooks eeg_sample_p 10-50 s")
            f = h5py.File(io.BytesIO(z.read(PREFIX + "emg_bursts.h5")), "r")
            _, fs, bits, a = channel(f, "channel_3")
            d = (a - (1 << (bits - 1)))[None, 4 * fs:24 * fs]
            write_edf("data/plux_1ch_emg_biceps_1000Hz_20s.edf", ["EMG"], d, 16,
                      VCC / (1 << bits) / EMG_GAIN * 1e3, "mV", fs, "X X X X",
                      "biosignalsnotebooks emg_bursts 4-24 s")
    print(f"wrote {len(EEG)} EEG and {len(EMG)} EMG recordings to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/real")
    ap.add_argument("--wheel", help="use this wheel instead of downloading it")
    ap.add_argument("--extract", action="store_true",
                    help="also rewrite the shipped test extracts under data/")
    a = ap.parse_args()
    wheel = fetch_wheel(a.wheel)
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    convert(wheel, a.out, a.extract)


if __name__ == "__main__":
    main()
