"""LSL: the real-time example, run only inside a network namespace that has nothing but the
loopback interface (so no packet can leave the machine), with lsl_api.cfg confining stream
resolution to 127.0.0.1. Skipped where pylsl is missing or namespaces are not permitted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mfr_eeg
from conftest import ROOT

pytest.importorskip("pylsl")
EXAMPLES = ROOT / "python" / "examples"


def _namespace_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10)
    return r.returncode == 0


def test_lsl_stream_is_denoised_in_real_time_on_loopback_only(tmp_path: Path):
    if not _namespace_ok():
        pytest.skip("cannot make a loopback-only network namespace (`unshare -n` needs root)")
    save = tmp_path / "run.npz"
    # Inside the namespace: only lo exists; show it, then run the example.
    script = (
        "ip link set lo up && ip -o link | cut -d: -f2 | tr -d ' ' > {ifaces} && "
        "exec {py} {ex} --seconds 8 --json --save {save}"
    ).format(ifaces=tmp_path / "ifaces", py=sys.executable, ex=EXAMPLES / "lsl_realtime.py", save=save)
    env = dict(os.environ, LSLAPICFG=str(EXAMPLES / "lsl_api.cfg"))
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert (tmp_path / "ifaces").read_text().split() == ["lo"]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    d = np.load(save)
    x, got = d["input"], d["received"]
    n = got.shape[1]
    # Samples published before the consumer connected are not delivered; the rest all are.
    assert n == result["samples_received"] and n > 0.8 * x.shape[1], (n, x.shape)
    # What arrives is exactly the CoreStreamer's output for the replayed input (LSL carries the
    # float32 values unchanged): one contiguous run of it, missing what was published before
    # the consumer connected and, under load, the last few samples still in flight when it
    # stopped.
    s = mfr_eeg.CoreStreamer(mfr_eeg.Model.default(), x.shape[0], 256.0)
    want = s.push(x)
    starts = [k for k in range(want.shape[1] - n + 1) if np.array_equal(want[:, k], got[:, 0])]
    match = [k for k in starts if np.array_equal(want[:, k:k + n], got)]
    assert match, (starts, n, want.shape)
    k = match[0]
    assert k + n >= want.shape[1] - 64, (k, n, want.shape)
    assert np.abs(got - x[:, k:k + n]).max() > 1.0, "the stream was not denoised"
