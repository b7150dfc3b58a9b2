"""Per-band change that a model makes to real EEG far from the eyes.

Runs mfr_eeg.denoise (single-channel model only) on the central, parietal and occipital
channels of the EEGLAB tutorial recording and prints the 1-40 Hz RRMSE between output and input,
overall and per band (RMS of the change over RMS of the input in the band, Welch PSDs).

    python scripts/clean_change_bands.py default /path/to/other.safetensors

Needs numpy, scipy, mne and the mfr_eeg Python package (python/).
"""
import sys

import mfr_eeg
import mne
import numpy as np
import scipy.signal as ss

mne.set_log_level('ERROR')
raw = mne.io.read_raw_edf('data/eeglab_tutorial_32ch_128Hz_238s.edf', preload=True)
picks = [c for c in raw.ch_names if c.upper().startswith(('O','P','C')) and 'EOG' not in c.upper()]
x = raw.copy().pick(picks).get_data()*1e6
fs = raw.info['sfreq']
sos = ss.butter(4, [1, 40], 'bandpass', fs=fs, output='sos')
for path in sys.argv[1:]:
    m = mfr_eeg.Model.load(path) if path != 'default' else None
    y = mfr_eeg.denoise(x, fs, m)
    xb, yb = ss.sosfiltfilt(sos, x, axis=1), ss.sosfiltfilt(sos, y, axis=1)
    e = yb - xb
    f, Pe = ss.welch(e, fs, nperseg=256); _, Px = ss.welch(xb, fs, nperseg=256)
    r = np.sqrt((e**2).sum()/ (xb**2).sum())
    bands = [(1,2),(2,4),(4,8),(8,13),(13,20),(20,30),(30,40)]
    s = ' '.join(f"{a}-{b}:{np.sqrt(Pe[:, (f>=a)&(f<b)].sum()/Px[:, (f>=a)&(f<b)].sum()):.2f}" for a,b in bands)
    print(f"{path}: change {r:.3f}  per band {s}")
