"""Per-band change that a model makes to real EEG.

Runs mfr_eeg.denoise (single-channel model only) on the central, parietal and occipital
channels of the EEGLAB tutorial recording (far from the eyes) and prints the 1-40 Hz RRMSE
between output and input, overall and per band (RMS of the change over RMS of the input in the
band, Welch PSDs).

    python scripts/clean_change_bands.py default /path/to/other.safetensors

With `--edf FILE` it takes every channel of FILE instead, full band, and prints each band's share
of the input's power next to the change (e.g. the real held-out recordings in data/real/eeg):

    python scripts/clean_change_bands.py --edf data/real/eeg/plux_eeg_sample_2cm_v.edf default

Needs numpy, scipy, mne and the mfr_eeg Python package (python/).
"""
import sys

import mfr_eeg
import mne
import numpy as np
import scipy.signal as ss

mne.set_log_level('ERROR')
args = sys.argv[1:]
edf = None
if args[:1] == ['--edf']:
    edf, args = args[1], args[2:]
raw = mne.io.read_raw_edf(edf or 'data/eeglab_tutorial_32ch_128Hz_238s.edf', preload=True)
if edf is None:
    picks = [c for c in raw.ch_names
             if c.upper().startswith(('O', 'P', 'C')) and 'EOG' not in c.upper()]
    raw = raw.pick(picks)
x = raw.get_data() * 1e6
fs = raw.info['sfreq']
if edf is None:
    sos = ss.butter(4, [1, 40], 'bandpass', fs=fs, output='sos')
    band = lambda v: ss.sosfiltfilt(sos, v, axis=1)  # noqa: E731
    bands = [(1, 2), (2, 4), (4, 8), (8, 13), (13, 20), (20, 30), (30, 40)]
else:
    band = lambda v: v  # noqa: E731
    bands = [(0, 1), (1, 2), (2, 4), (4, 8), (8, 13), (13, 20), (20, 30), (30, 40), (40, 70),
             (70, fs / 2)]
for path in args:
    m = mfr_eeg.Model.load(path) if path != 'default' else None
    y = mfr_eeg.denoise(x, fs, m)
    xb, yb = band(x), band(y)
    e = yb - xb
    n = int(2 * fs)
    f, Pe = ss.welch(e, fs, nperseg=n)
    _, Px = ss.welch(xb, fs, nperseg=n)
    r = np.sqrt((e**2).sum() / (xb**2).sum())

    def cell(a, b):
        sel = (f >= a) & (f < b)
        c = f"{a:g}-{b:g}:{np.sqrt(Pe[:, sel].sum() / Px[:, sel].sum()):.2f}"
        return c if edf is None else f"{c} (power {Px[:, sel].sum() / Px.sum():.2f})"

    print(f"{path}: change {r:.3f}  per band " + ' '.join(cell(a, b) for a, b in bands))
