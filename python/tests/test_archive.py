"""Dask: `python -m mfr_eeg.archive` on a LocalCluster of 2 workers bound to 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mfr_eeg
from conftest import EDF

distributed = pytest.importorskip("dask.distributed")

CHANNELS = "fp1,fp2,cz"  # a few channels keep the run short


def test_archive_maps_files_resumes_and_reports_failures(tmp_path: Path):
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    shutil.copy(EDF, src / "a.edf")
    shutil.copy(EDF, src / "sub" / "b.edf")
    (src / "broken.edf").write_bytes(b"0       not an EDF header")
    (src / "notes.txt").write_text("ignored")

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        for w in cluster.workers.values():
            assert w.address.startswith("tcp://127.0.0.1:"), w.address

        def run() -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "mfr_eeg.archive", str(src), str(dst), "--scheduler", cluster.scheduler_address, "--channels", CHANNELS],
                capture_output=True,
                text=True,
                timeout=300,
            )

        r = run()
        assert r.returncode == 1, r.stdout + r.stderr
        assert "2 denoised, 0 skipped (already done), 1 failed" in r.stdout, r.stdout
        failures = json.loads((dst / "mfr-eeg-failures.json").read_text())
        assert list(failures) == [str(src / "broken.edf")]
        assert str(src / "broken.edf") in failures[str(src / "broken.edf")]

        # The outputs are the library's (= the CLI's) output for those options, byte for byte.
        want = tmp_path / "want.edf"
        mfr_eeg.denoise_file(EDF, want, channels=CHANNELS.split(","))
        assert (dst / "a.edf").read_bytes() == want.read_bytes()
        assert (dst / "sub" / "b.edf").read_bytes() == want.read_bytes()
        assert sorted(p.name for p in dst.rglob("*")) == ["a.edf", "b.edf", "mfr-eeg-failures.json", "sub"]

        # Resumed: finished files are skipped; once the broken file is replaced it is done.
        mtime = os.stat(dst / "a.edf").st_mtime_ns
        shutil.copy(EDF, src / "broken.edf")
        r = run()
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 denoised, 2 skipped (already done), 0 failed" in r.stdout, r.stdout
        assert os.stat(dst / "a.edf").st_mtime_ns == mtime
        assert not (dst / "mfr-eeg-failures.json").exists()
        assert (dst / "broken.edf").read_bytes() == want.read_bytes()
