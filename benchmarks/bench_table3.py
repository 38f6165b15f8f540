"""Time the full Table 3 ablation (16 rows, 5-fold subject-level CV) on a PD-FEV-sized cohort.

Uses a CohortIntensities .npz when given (``--cohort``), else 173 synthetic subjects (97 PD, 76 HC)
generated in memory; prints seconds per row and the total. Not part of the tests.

    .venv/bin/python benchmarks/bench_table3.py [--cohort cache.npz] [--out runs/bench_table3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from dfer_pd.stage2.ablation import run_ablation
from dfer_pd.stage2.classifiers import ClassifierConfig
from dfer_pd.stage2.splits import CVConfig
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.synthetic.intensities import synthetic_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="CohortIntensities .npz (default: synthetic 97 PD / 76 HC)")
    parser.add_argument("--out", type=Path, help="write table3.csv / table3.md and per-row outputs here")
    parser.add_argument("--max-epochs", type=int, default=ClassifierConfig.max_epochs)
    parser.add_argument("--accelerator", default="cpu", help="'cpu' (default: tiny models run faster there) or 'auto'")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = CohortIntensities.load(args.cohort) if args.cohort else synthetic_cohort(97, 76, seed=0)
    cv = CVConfig(n_splits=5, seeds=[0], accelerator=args.accelerator)
    started = time.perf_counter()
    table = run_ablation(data, cv, args.out, base_config=ClassifierConfig(max_epochs=args.max_epochs))
    total = time.perf_counter() - started
    print(f"{len(data)} subjects ({int(data.labels.sum())} PD), 5 folds, {args.threads} torch thread(s), "
          f"accelerator={args.accelerator}, max_epochs={args.max_epochs}")
    for _, row in table.iterrows():
        print(f"{row['name']:<26} {row['seconds']:8.1f} s   accuracy {row['accuracy_mean']:.3f}")
    print(f"{'total':<26} {total:8.1f} s")


if __name__ == "__main__":
    main()
