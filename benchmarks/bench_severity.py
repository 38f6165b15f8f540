"""Benchmark (not a test): how well the severity model follows MDS-UPDRS 3.2 on synthetic intensities.

    .venv/bin/python benchmarks/bench_severity.py [--repeats 5] [--permutations 99] [--subjects 173]

173 synthetic subjects (97 PD, 76 HC, the paper's cohort size; :func:`dfer_pd.synthetic.intensities.synthetic_cohort`
with ``severity=True``: each PD subject's asked-expression cosine drops in proportion to its score) at two effect
sizes (the diagonal gap at the mean PD score, 0.02 and 0.06) and at the larger one with the scores shuffled among
the subjects. For each: the residual LSTM regressor with the pd_demo settings (hidden 32, 60 epochs, patience 15)
under repeated 5-fold subject-level CV, the mean over repeats and the corrected 95% interval of MAE, Spearman's rho
and quadratic-weighted kappa, and the permutation p of the out-of-fold rho; then the seconds it took.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dfer_pd.common.machine import machine_line

SETTINGS = (("small effect (gap 0.02)", 0.28, False), ("large effect (gap 0.06)", 0.24, False),
            ("large effect, scores shuffled", 0.24, True))


def measure(subjects: int, repeats: int, permutations: int) -> list[dict]:
    from dfer_pd.stage2.settings import ClassifierConfig, CVConfig, RuntimeSettings
    from dfer_pd.stage2.severity import SeverityRow, cross_validate_severity, severity_permutation_test
    from dfer_pd.synthetic.intensities import synthetic_cohort

    config = ClassifierConfig(hidden_size=32, max_epochs=60, patience=15)
    cv = CVConfig(repeats=repeats, runtime=RuntimeSettings(accelerator="cpu", workers=1))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=173)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--permutations", type=int, default=99)
    args = parser.parse_args()
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
    main()
