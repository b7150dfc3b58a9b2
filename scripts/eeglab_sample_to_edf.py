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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spkit_blinks_to_edf import write_edf  # noqa: E402  (the same plain-EDF writer)

FS = 128
OUT = "eeglab_tutorial_32ch_128Hz_238s.edf"


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
    types = ["EOG electrode" if l.startswith("EOG") else "EEG electrode" for l in labels]
    write_edf(dest, x, "EEGLAB tutorial dataset (sccn/eeglab sample_data)", labels=labels, fs=FS,
              transducers=types, prefilter="HP:none LP:none")
    print(dest)


if __name__ == "__main__":
    main()
