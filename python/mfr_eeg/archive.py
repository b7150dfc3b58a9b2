"""Denoise an archive of EDF/EDF+/BDF files on a Dask cluster.

    python -m mfr_eeg.archive IN_DIR OUT_DIR [--scheduler ADDRESS] [--workers N]
        [--model PATH] [--channels A,B] [--notch 50|60] [--bandpass LO,HI] [--hop N]

Every ``*.edf``/``*.bdf`` under IN_DIR (recursively) becomes OUT_DIR/<same relative path>,
written exactly as ``mfr-eeg denoise`` writes it (a temporary file renamed at the end, so an
output that exists is complete). Outputs that already exist are skipped, so an interrupted run
is resumed by running the same command again. A file that fails does not stop the others: each
failure is printed with its message and listed in OUT_DIR/mfr-eeg-failures.json, and the exit
status is 1.

Without ``--scheduler`` a local cluster of ``--workers`` processes is started, bound to
127.0.0.1; with it, the files are mapped over that cluster's workers (which need this package
installed and the paths visible, e.g. on a shared file system).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

SUFFIXES = (".edf", ".bdf")
FAILURES = "mfr-eeg-failures.json"


def find_inputs(in_dir: Path) -> list[Path]:
    """Recording files under ``in_dir``, sorted, hidden files (temporary outputs) excluded."""
    return sorted(
        p
        for p in in_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )


def _denoise_one(src: str, dst: str, model_path: Optional[str], options: dict) -> dict:
    # Runs on a worker: imports there, loads the model there (models are small).
    import mfr_eeg

    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    model = mfr_eeg.Model.load(model_path) if model_path else None
    return mfr_eeg.denoise_file(src, dst, model, **options)


def run_archive(
    in_dir: Path,
    out_dir: Path,
    client: Any,
    model_path: Optional[str] = None,
    options: Optional[dict] = None,
    log: Any = print,
) -> dict:
    """Map every input without an output over ``client``'s workers; returns
    ``{"done": [...], "skipped": [...], "failed": {input: message}}``."""
    from dask.distributed import as_completed

    options = options or {}
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise SystemExit(f"{in_dir}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() == in_dir.resolve():
        raise SystemExit(f"{out_dir}: the output directory must differ from the input directory")
    report: dict = {"done": [], "skipped": [], "failed": {}}
    futures = {}
    for src in find_inputs(in_dir):
        dst = out_dir / src.relative_to(in_dir)
        if dst.exists():
            report["skipped"].append(str(src))
            continue
        fut = client.submit(_denoise_one, str(src), str(dst), model_path, options, pure=False, key=f"mfr-eeg-{src.relative_to(in_dir)}")
        futures[fut] = src
    log(f"{len(futures)} to denoise, {len(report['skipped'])} already done")
    for fut in as_completed(futures):
        src = futures[fut]
        try:
            s = fut.result()
        except Exception as e:  # one file's failure never stops the others
            report["failed"][str(src)] = f"{type(e).__name__}: {e}"
            log(f"FAILED {src}: {e}")
        else:
            report["done"].append(str(src))
            log(f"ok     {src} ({s['recording_seconds']:.0f} s in {s['elapsed_seconds']:.1f} s)")
    failures = out_dir / FAILURES
    if report["failed"]:
        failures.write_text(json.dumps(report["failed"], indent=1, sort_keys=True) + "\n")
    elif failures.exists():
        failures.unlink()
    return report


def _band(s: str) -> tuple[float, float]:
    lo, hi = s.split(",")
    return float(lo), float(hi)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mfr_eeg.archive", description=__doc__.split("\n\n")[0])
    p.add_argument("in_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, default=2, help="local cluster worker processes (default 2)")
    p.add_argument("--model", help="model file (default: the shipped fast-256hz model)")
    p.add_argument("--channels", type=lambda s: s.split(","), help="labels to denoise (default: every EEG channel)")
    p.add_argument("--notch", type=float, choices=(50.0, 60.0))
    p.add_argument("--notch-harmonics", action="store_true")
    p.add_argument("--bandpass", type=_band, metavar="LO,HI")
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--hop", type=int)
    p.add_argument("--threads", type=int, default=1, help="threads per file (default 1: parallel over files)")
    a = p.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    options = {
        "channels": a.channels,
        "notch": a.notch,
        "notch_harmonics": a.notch_harmonics,
        "bandpass": a.bandpass,
        "order": a.order,
        "hop": a.hop,
        "threads": a.threads,
    }
    started = time.monotonic()
    if a.scheduler:
        client = Client(a.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        r = run_archive(a.in_dir, a.out_dir, client, a.model, options)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(
        f"{len(r['done'])} denoised, {len(r['skipped'])} skipped (already done), "
        f"{len(r['failed'])} failed in {time.monotonic() - started:.1f} s"
    )
    if r["failed"]:
        print(f"failures listed in {a.out_dir / FAILURES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
