"""Time the full Table 3 ablation (16 rows, k-fold subject-level CV, R repeats) before and after, in one run.

"Before" is the engine the project used until now: one Lightning ``Trainer`` fit per residual network
(``--cv.engine lightning``); "after" is the batched engine, which trains every network of the table as
one stacked ensemble (the default). Both run the same rows on the same folds with the same seeds, and
give the same figures (the last column shows the largest accuracy difference between them). Uses a
CohortIntensities .npz (``--cohort``), else 173 synthetic subjects (97 PD, 76 HC) with a moderate group
difference. Prints seconds per row, total seconds and fits per second. Not part of the tests.

    .venv/bin/python benchmarks/bench_table3.py [--cohort intensities.npz] [--repeats 1] [--engines batched,lightning]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from dfer_pd.stage2.ablation import run_ablation
from dfer_pd.stage2.classifiers import ClassifierConfig
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.splits import CVConfig
from dfer_pd.synthetic.intensities import synthetic_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="CohortIntensities .npz (default: synthetic 97 PD / 76 HC)")
    parser.add_argument("--out", type=Path, help="write each engine's table3.csv / table3.md under OUT/<engine>")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the 5-fold CV (the CLI's default is 10)")
    parser.add_argument("--engines", default="batched,lightning", help="comma-separated: batched, lightning")
    parser.add_argument("--max-epochs", type=int, default=ClassifierConfig.max_epochs)
    parser.add_argument("--threads", type=int, default=CVConfig.threads,
                        help="torch intra-op threads while networks train (the commands' default: 1; 0: torch's default)")
    args = parser.parse_args()

    # A moderate effect (not the default separable one): networks then early-stop as they do on real data.
    data = CohortIntensities.load(args.cohort) if args.cohort else synthetic_cohort(97, 76, pd_diagonal=0.28, seed=0)
    base = ClassifierConfig(max_epochs=args.max_epochs)
    tables = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        cv = CVConfig(n_splits=5, repeats=args.repeats, seeds=[0], accelerator="cpu", engine=engine,
                      threads=args.threads)
        started = time.perf_counter()
        table = run_ablation(data, cv, None if args.out is None else args.out / engine, base_config=base)
        tables[engine] = (table, time.perf_counter() - started)
    fits = int(next(iter(tables.values()))[0]["fits"].sum())
    print(f"{len(data)} subjects ({int(data.labels.sum())} PD), {args.repeats} x 5-fold CV, {fits} fits per table, "
          f"{args.threads or torch.get_num_threads()} torch thread(s), max_epochs={args.max_epochs}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engines = list(tables)
    print(f"{'row':<26}" + "".join(f"{e + ' s':>14}" for e in engines) + f"{'accuracy':>10}")
    first = tables[engines[0]][0]
    for i, name in enumerate(first["name"]):
        cells = "".join(f"{tables[e][0]['seconds'].iloc[i]:14.2f}" for e in engines)
        print(f"{name:<26}{cells}{first['accuracy_mean'].iloc[i]:10.3f}")
    print(f"{'total (wall)':<26}" + "".join(f"{tables[e][1]:14.1f}" for e in engines))
    print(f"{'fits per second':<26}" + "".join(f"{fits / tables[e][1]:14.2f}" for e in engines))
    if len(engines) > 1:
        a, b = tables[engines[0]][0], tables[engines[1]][0]
        gap = (a["accuracy_mean"] - b["accuracy_mean"]).abs().max()
        print(f"speed-up {engines[0]} vs {engines[1]}: {tables[engines[1]][1] / tables[engines[0]][1]:.1f}x; "
              f"largest accuracy difference between them: {gap:.2e}")


if __name__ == "__main__":
    main()
