"""Benchmark (not a test): how well the severity model follows MDS-UPDRS 3.2 on synthetic intensities.

    .venv/bin/python benchmarks/bench_severity.py [--repeats 5] [--permutations 99] [--subjects 173]
    .venv/bin/python benchmarks/bench_severity.py --shuffles 20 [--permutations 99] [--subjects 173]

173 synthetic subjects (97 PD, 76 HC, the paper's cohort size; :func:`dfer_pd.synthetic.intensities.synthetic_cohort`
with ``severity=True``: each PD subject's asked-expression cosine drops in proportion to its score) at two effect
sizes (the diagonal gap at the mean PD score, 0.02 and 0.06) and at the larger one with the scores shuffled among
the subjects. For each: the residual LSTM regressor with the pd_demo settings (hidden 32, 60 epochs, patience 15)
under repeated 5-fold subject-level CV, the mean over repeats and the corrected 95% interval of MAE, Spearman's rho
and quadratic-weighted kappa, and the permutation p of the out-of-fold rho; then the seconds it took.

``--shuffles K`` instead repeats only the shuffled setting's permutation test over K shuffles of the scores (seeds
1..K), to say how often p < 0.05 comes out at chance: each shuffle's observed out-of-fold rho and p, then the count
with its Wilson 95% interval (about 5% is what a valid test gives).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dfer_pd.common.machine import machine_line

SETTINGS = (("small effect (gap 0.02)", 0.28, False), ("large effect (gap 0.06)", 0.24, False),
            ("large effect, scores shuffled", 0.24, True))


def measure(subjects: int, repeats: int, permutations: int) -> list[dict]:
    from dfer_pd.stage2.settings import ClassifierConfig, CVConfig
    from dfer_pd.stage2.severity import SeverityRow, cross_validate_severity, severity_permutation_test
    from dfer_pd.synthetic.intensities import synthetic_cohort

    config = ClassifierConfig(init_args={"hidden_size": 32, "max_epochs": 60, "patience": 15})
    cv = CVConfig(repeats=repeats)
    row = SeverityRow("lstm_processed", "lstm", "processed")
    n_pd = round(subjects * 97 / 173)
    out = []
    for name, pd_diagonal, shuffled in SETTINGS:
        data = synthetic_cohort(n_pd, subjects - n_pd, pd_diagonal=pd_diagonal, seed=0, severity=True)
        if shuffled:
            data.updrs_3_2 = data.updrs_3_2[np.random.default_rng(7).permutation(len(data))]
        started = time.perf_counter()
        result = cross_validate_severity(data, config, cv, rows=[row])[0]
        test = severity_permutation_test(data, config, cv, permutations, row=row) if permutations else None
        out.append({"setting": name, "summary": result.summary(), "p": test["p_values"]["spearman"] if test else None,
                    "seconds": time.perf_counter() - started})
    return out


def shuffled_p_values(subjects: int, permutations: int, shuffles: int) -> list[dict]:
    """The permutation test of the large-effect cohort with its scores shuffled by seeds 1..``shuffles``."""
    from dfer_pd.stage2.settings import ClassifierConfig, CVConfig
    from dfer_pd.stage2.severity import SeverityRow, severity_permutation_test
    from dfer_pd.synthetic.intensities import synthetic_cohort

    config = ClassifierConfig(init_args={"hidden_size": 32, "max_epochs": 60, "patience": 15})
    cv = CVConfig(repeats=1)
    row = SeverityRow("lstm_processed", "lstm", "processed")
    n_pd = round(subjects * 97 / 173)
    data = synthetic_cohort(n_pd, subjects - n_pd, pd_diagonal=SETTINGS[-1][1], seed=0, severity=True)
    scores, out = data.updrs_3_2.copy(), []
    for seed in range(1, shuffles + 1):
        data.updrs_3_2 = scores[np.random.default_rng(seed).permutation(len(data))]
        started = time.perf_counter()
        test = severity_permutation_test(data, config, cv, permutations, row=row)
        out.append({"seed": seed, "rho": test["observed"]["spearman"], "p": test["p_values"]["spearman"],
                    "seconds": time.perf_counter() - started})
        print(f"shuffle {seed}: out-of-fold rho {out[-1]['rho']:.3f}, p {out[-1]['p']:.3f} ({out[-1]['seconds']:.0f} s)",
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=173)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=99)
    parser.add_argument("--shuffles", type=int, default=0, help="repeat only the shuffled setting over this many shuffles")
    args = parser.parse_args()
    if args.shuffles:
        from dfer_pd.stage2.statistics import wilson_interval

        rows = shuffled_p_values(args.subjects, args.permutations, args.shuffles)
        hits = sum(row["p"] < 0.05 for row in rows)
        low, high = wilson_interval(hits, len(rows))
        rho = np.array([row["rho"] for row in rows])
        print(f"{args.subjects} subjects, scores shuffled {len(rows)} times, {args.permutations} permutations each: "
              f"p < 0.05 in {hits} of {len(rows)} ({hits / len(rows):.0%}, Wilson 95% CI {low:.0%}-{high:.0%}); "
              f"out-of-fold rho {rho.mean():.3f} ± {rho.std(ddof=1):.3f} (mean ± std), "
              f"{sum(row['seconds'] for row in rows):.0f} s")
        return
    rows = measure(args.subjects, args.repeats, args.permutations)
    print(f"{args.subjects} subjects, {args.repeats} x 5-fold CV, residual LSTM regressor; mean over repeats "
          f"(95% CI, corrected resampled t); permutation p of the out-of-fold rho ({args.permutations} permutations)")
    print("| setting | MAE | Spearman rho | weighted kappa | permutation p | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        s = row["summary"]
        cells = [f"{s[f'severity/{m}_mean']:.3f} ({s[f'severity/{m}_ci_low']:.3f}-{s[f'severity/{m}_ci_high']:.3f})"
                 for m in ("mae", "spearman", "kappa")]
        p = "-" if row["p"] is None else f"{row['p']:.3f}"
        print(f"| {row['setting']} | " + " | ".join(cells) + f" | {p} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    print(machine_line())
    from dfer_pd.stage2.runtime import running_on
    from dfer_pd.stage2.settings import RuntimeSettings

    with running_on(RuntimeSettings(accelerator="cpu", workers=1)):  # the networks on the CPU, in this process
        main()
