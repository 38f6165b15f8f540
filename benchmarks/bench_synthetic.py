"""Benchmark (not a test): wall time of the demo's synthetic data writers with 1 and more worker processes.

    .venv/bin/python benchmarks/bench_synthetic.py [--workers 1 2] [--clips 960] [--subjects 100]

The demo's settings (dfer_pd/commands/demo.py): `make_dfew_tree(960 clips, seed 0)` and
`make_pd_cohort(100 subjects, effect_size 1.5, seconds 5, fps 6, recording "phone", seed 0)`. Each
run writes to a fresh temporary folder; the files of every worker count are checked to be
byte-identical (sha256) to the first one's. Timings include starting the worker processes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from dfer_pd.common.machine import machine_line
from dfer_pd.synthetic.cohort import make_pd_cohort
from dfer_pd.synthetic.dfew import make_dfew_tree


def tree_sha256(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (0 = all CPUs)")
    parser.add_argument("--clips", type=int, default=960, help="synthetic DFEW clips (0 skips DFEW)")
    parser.add_argument("--subjects", type=int, default=100, help="cohort subjects (0 skips the cohort)")
    args = parser.parse_args()
    writers = {
        "dfew": (args.clips, lambda root, workers: make_dfew_tree(root, num_clips=args.clips, seed=0, workers=workers)),
        "cohort": (args.subjects, lambda root, workers: make_pd_cohort(
            root, num_subjects=args.subjects, effect_size=1.5, seconds=5.0, fps=6, seed=0, recording="phone",
            workers=workers)),
    }
    print(f"CPUs: {os.cpu_count()}, load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
    try:
        for name, (count, write) in writers.items():
            if count <= 0:
                continue
            reference, first = None, None
            for workers in args.workers:
                root = work / f"{name}-{workers}"
                started = time.perf_counter()
                write(root, workers)
                seconds = time.perf_counter() - started
                first = first or seconds
                hashes = tree_sha256(root)
                reference = reference or hashes
                print(f"{name:6s} ({count} {'clips' if name == 'dfew' else 'subjects'}) workers={workers}: "
                      f"{seconds:7.1f} s  (x{first / seconds:.2f} vs workers={args.workers[0]}; "
                      f"{len(hashes)} files, identical: {hashes == reference})", flush=True)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
