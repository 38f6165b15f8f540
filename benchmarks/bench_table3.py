"""Time the full Table 3 ablation (16 rows, k-fold subject-level CV, R repeats) before and after, in one run.

"Before" is the engine the project used until now: one Lightning ``Trainer`` fit per residual network
(``--runtime.engine lightning``); "after" is the batched engine, which trains every network of the table as
one stacked ensemble (the default). Both run the same rows on the same folds with the same seeds, and
give the same figures (the last line shows the largest accuracy difference between them). ``--before
COMMIT`` also times, in the same run, the benchmark of the code as it was at COMMIT (``git archive`` into a
temporary folder, one torch thread as its README measured it). Uses a CohortIntensities .npz
(``--cohort``), else 173 synthetic subjects (97 PD, 76 HC) whose PD group shows the asked expression with
a diagonal cosine of ``--pd-diagonal`` (HC: 0.30; 0.24, the default, is a strong effect where the networks
train nearly all 150 epochs; 0.28 a moderate one where they stop earlier). Prints seconds per row, total
seconds and fits per second. Not part of the tests.

    .venv/bin/python benchmarks/bench_table3.py [--cohort intensities.npz] [--pd-diagonal 0.24] [--repeats 1]
        [--engines batched,lightning] [--before ac6e3f8]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dfer_pd.common.machine import machine_line
from dfer_pd.stage2.ablation import run_ablation
from dfer_pd.stage2.classifiers import ResidualRNNEstimator
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.settings import ClassifierConfig, CVConfig, RuntimeSettings
from dfer_pd.synthetic.intensities import synthetic_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="CohortIntensities .npz (default: synthetic 97 PD / 76 HC)")
    parser.add_argument("--out", type=Path, help="write each engine's table3.csv / table3.md under OUT/<engine>")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the 5-fold CV (the CLI's default is 10)")
    parser.add_argument("--engines", default="batched,lightning", help="comma-separated: batched, lightning")
    parser.add_argument("--max-epochs", type=int, default=ResidualRNNEstimator().max_epochs)
    parser.add_argument("--pd-diagonal", type=float, default=0.24, help="synthetic PD group's diagonal cosine (HC 0.30)")
    parser.add_argument("--before", metavar="COMMIT", help="also time the benchmark of the code at COMMIT, in this run")
    parser.add_argument("--threads", type=int, default=RuntimeSettings.threads,
                        help="torch intra-op threads while networks train (the commands' default: 1; 0: torch's default)")
    args = parser.parse_args()

    # A moderate effect (not the default separable one): networks then early-stop as they do on real data.
    data = CohortIntensities.load(args.cohort) if args.cohort else synthetic_cohort(97, 76, pd_diagonal=args.pd_diagonal,
                                                                                        seed=0)
    base = ClassifierConfig(init_args={"max_epochs": args.max_epochs})
    tables = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        cv = CVConfig(n_splits=5, repeats=args.repeats, seeds=[0])
        started = time.perf_counter()
        with running_on(RuntimeSettings(accelerator="cpu", engine=engine, threads=args.threads)):
            table = run_ablation(data, cv, None if args.out is None else args.out / engine, base_config=base)
        tables[engine] = (table, time.perf_counter() - started)
    if args.before:
        tables[f"{args.before[:7]} (before)"] = before(args.before, data, args.max_epochs)
    fits = int(next(iter(tables.values()))[0]["fits"].sum())
    print(f"{len(data)} subjects ({int(data.labels.sum())} PD), {args.repeats} x 5-fold CV, {fits} fits per table, "
          f"{args.threads or torch.get_num_threads()} torch thread(s), max_epochs={args.max_epochs}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engines = list(tables)
    width = {e: max(14, len(e) + 4) for e in engines}
    print(f"{'row':<26}" + "".join(f"{e + ' s':>{width[e]}}" for e in engines) + f"{'accuracy':>10}")
    first = tables[engines[0]][0]
    for i, name in enumerate(first["name"]):
        cells = "".join(f"{tables[e][0]['seconds'].iloc[i]:{width[e]}.2f}" for e in engines)
        print(f"{name:<26}{cells}{first['accuracy_mean'].iloc[i]:10.3f}")
    print(f"{'total (wall)':<26}" + "".join(f"{tables[e][1]:{width[e]}.1f}" for e in engines))
    print(f"{'fits per second':<26}" + "".join(f"{fits / tables[e][1]:{width[e]}.2f}" for e in engines))
    for other in engines[1:]:
        a, b = tables[engines[0]][0], tables[other][0]
        decimals = 3 if other.endswith("(before)") else 12  # the old benchmark printed 3 decimals
        gap = (a["accuracy_mean"].round(decimals) - b["accuracy_mean"].round(decimals)).abs().max()
        print(f"speed-up {engines[0]} vs {other}: {tables[other][1] / tables[engines[0]][1]:.1f}x; "
              f"largest accuracy difference between them: {gap:.2e}")


def before(commit: str, data: CohortIntensities, max_epochs: int):
    """The Table 3 benchmark of the code at ``commit`` (one repeat, as it had no repeats), timed in a subprocess."""
    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "dfer_pd", "benchmarks"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        cohort = data.save(Path(folder) / "cohort.npz")
        env = {**os.environ, "PYTHONPATH": folder, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "benchmarks/bench_table3.py", "--cohort", str(cohort),
                               "--max-epochs", str(max_epochs)], cwd=folder, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"the benchmark at {commit} failed:\n{done.stderr[-2000:]}")
    rows = re.findall(r"^(\w+)\s+([\d.]+) s\s+accuracy ([\d.]+)$", done.stdout, flags=re.M)
    total = float(re.search(r"^total\s+([\d.]+) s$", done.stdout, flags=re.M).group(1))
    table = pd.DataFrame([{"name": n, "seconds": float(t), "accuracy_mean": float(a), "fits": 5} for n, t, a in rows])
    # Its own total (the table, without start-up), comparable with the engines' totals; `seconds` includes start-up.
    print(f"(the {commit[:7]} benchmark took {seconds:.1f} s with its start-up)")
    return table, total


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
