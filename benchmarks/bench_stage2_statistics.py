"""Benchmark (not a test): the figures a reviewer checks in stage 2's probabilities, intervals and tests.

    .venv/bin/python benchmarks/bench_stage2_statistics.py [--parts calibration,intervals,table3,cosine]

Runs on the code it is imported with, so the same script measures a commit before and after a change
(``git worktree add /tmp/before <commit>`` and ``PYTHONPATH=/tmp/before .venv/bin/python
/tmp/before/benchmarks/...`` or this file with ``PYTHONPATH`` pointing at the older tree):

- ``calibration``: a 2 x 5-fold CV of train-pd's default residual LSTM on 173 synthetic subjects (97 PD, 76 HC)
  with a strong group difference, and on the same subjects with their labels permuted. The calibrator is
  learnt from the out-of-fold p(PD) as train-pd learns it (``StatsConfig().calibration``), the screening
  model is fitted on all subjects; printed: the method, the Platt slope, the decision threshold, the
  calibrated p of a subject with raw p 0.2 / 0.4 / 0.6 / 0.8 and its verdict, the Brier scores, and over
  the cohort how many verdicts contradict the printed p(PD): NEGATIVE at a printed p(PD) of 0.5 or more,
  POSITIVE below it, or against the printed threshold (``p = 0.412 (threshold 0.41)``).
- ``intervals``: a perfectly separable cohort (40 subjects): the CV interval of accuracy and ROC AUC, and
  the hold-out's intervals (a random forest, 25% held out).
- ``table3``: Table 3 on a null cohort (no group difference, 80 subjects, tiny networks, 2 x 5-fold CV):
  the smallest raw p against the reference row and the smallest Holm-adjusted p (read from the table
  where it has the column, else computed here from the raw ones).
- ``cosine``: the tiny CLIP under bf16 autocast on the CPU: the cosine's dtype, its largest error against
  the float64 product of the same features, and against a float32 forward pass.
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from pathlib import Path

import numpy as np

from dfer_pd.common.machine import machine_line



def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (here only for code that has none of its own)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def calibration_part() -> None:
    from dfer_pd.stage2.crossval import cross_validate
    from dfer_pd.stage2.screening_model import calibration_from_cv, fit_screening_model
    from dfer_pd.stage2.settings import CVConfig, ClassifierConfig, StatsConfig
    from dfer_pd.synthetic.intensities import synthetic_cohort

    cv = CVConfig(repeats=2)
    classifier = ClassifierConfig()  # train-pd's default: the residual LSTM on Eq. 4 features
    method = StatsConfig().calibration
    strong = synthetic_cohort(97, 76, pd_diagonal=0.24, seed=3)
    permuted = synthetic_cohort(97, 76, pd_diagonal=0.24, seed=3)
    permuted.labels = permuted.labels[np.random.default_rng(7).permutation(len(permuted.labels))]
    print(f"calibration (StatsConfig().calibration = {method!r}; LSTM {cv.repeats} x {cv.n_splits}-fold CV, 173 subjects)")
    for name, data in (("strong", strong), ("permuted", permuted)):
        started = time.perf_counter()
        result = cross_validate(data, classifier, cv, progress=False)
        calibrator, report = calibration_from_cv(result.predictions, method, cv.threshold)
        model = fit_screening_model(data, classifier, cv, calibration=calibrator, calibration_report=report)
        raw = model.predict_proba(data.cosine, calibrated=False)
        calibrated = model.predict_proba(data.cosine)
        threshold = model.threshold
        positive = calibrated >= threshold
        printed = np.array([float(f"{p:.3f}") >= float(f"{threshold:.2f}") for p in calibrated])
        against_p = positive != (calibrated >= 0.5)
        slope = calibrator.params.get("a", float("nan")) if calibrator.method == "platt" else float("nan")
        fitted_slope = report.get("platt_slope", slope)
        cases = ", ".join(f"{r} -> {calibrator(r):.3g} {'POS' if calibrator(r) >= threshold else 'NEG'}"
                          for r in (0.2, 0.4, 0.6, 0.8))
        print(f"  {name:8s} CV accuracy {result.mean['accuracy']:.3f}, AUC {result.pooled['roc_auc']:.3f}; "
              f"method {calibrator.method}, Platt slope {fitted_slope:.3g}, threshold {threshold:.3g}; raw {cases}; "
              f"Brier raw {report['brier_raw']:.4f}, calibrated {report['brier_calibrated']:.4f}; "
              f"verdicts against the printed p(PD) {int(against_p.sum())}/{len(raw)}, against the printed threshold "
              f"{int((positive != printed).sum())}/{len(raw)}; differing from raw p >= 0.5: "
              f"{int((positive != (raw >= 0.5)).sum())}/{len(raw)} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)


def intervals_part() -> None:
    from dfer_pd.stage2.crossval import cross_validate, evaluate_holdout
    from dfer_pd.stage2.settings import CVConfig, ClassifierConfig
    from dfer_pd.synthetic.intensities import synthetic_cohort

    data = synthetic_cohort(20, 20, pd_diagonal=0.10, noise=0.01, seed=2)
    forest = ClassifierConfig.of_kind("rf", "processed", name="rf")
    for repeats in (1, 5):
        cv = CVConfig(repeats=repeats)
        result = cross_validate(data, forest, cv, progress=False)
        interval = result.interval
        print(f"separable cohort (40 subjects, rf, {repeats} x 5-fold CV): accuracy {result.mean['accuracy']:.3f} "
              f"CI {interval['accuracy'][0]:.3f}-{interval['accuracy'][1]:.3f}; ROC AUC {result.mean['roc_auc']:.3f} "
              f"CI {interval['roc_auc'][0]:.3f}-{interval['roc_auc'][1]:.3f}; sensitivity CI "
              f"{interval['sensitivity'][0]:.3f}-{interval['sensitivity'][1]:.3f}", flush=True)
    rng = np.random.default_rng(0)
    held = np.zeros(len(data), bool)
    for label in (0, 1):
        held[rng.choice(np.flatnonzero(data.labels == label), 5, replace=False)] = True
    report = evaluate_holdout(data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held)), forest,
                              CVConfig())
    intervals = report["intervals"]
    print(f"separable hold-out (10 of 40 subjects): accuracy {report['metrics']['accuracy']:.3f} CI "
          f"{intervals['accuracy'][0]:.3f}-{intervals['accuracy'][1]:.3f}; ROC AUC {report['metrics']['roc_auc']:.3f} "
          f"CI {intervals['roc_auc'][0]:.3f}-{intervals['roc_auc'][1]:.3f}; Brier "
          f"{report.get('brier', report['metrics'].get('brier', float('nan'))):.4f}; scored p(PD): "
          f"{'calibrated' if 'calibration' in report else 'raw'}", flush=True)


def table3_part() -> None:
    from dfer_pd.stage2.ablation import run_ablation
    from dfer_pd.stage2.settings import CVConfig, ClassifierConfig
    from dfer_pd.synthetic.intensities import synthetic_cohort

    data = synthetic_cohort(40, 40, pd_diagonal=0.30, hc_diagonal=0.30, seed=11)
    tiny = ClassifierConfig(init_args={"hidden_size": 4, "num_layers": 2, "max_epochs": 10, "batch_size": 32, "patience": 3})
    started = time.perf_counter()
    table = run_ablation(data, CVConfig(repeats=2), base_config=tiny, progress=False)
    raw = table["accuracy_p_vs_reference"].dropna().to_numpy()
    if "accuracy_p_holm" in table:
        adjusted, source = table["accuracy_p_holm"].dropna().to_numpy(), "Table 3's column"
    else:
        adjusted, source = holm(raw), "computed by this benchmark; the table has none"
    auc_raw = table["roc_auc_p_vs_reference"].dropna().to_numpy()
    print(f"null cohort Table 3 (80 subjects, {len(table)} rows, 2 x 5-fold CV, {time.perf_counter() - started:.0f} s): "
          f"smallest raw accuracy p {raw.min():.3f} (ROC AUC {auc_raw.min():.3f}); rows with raw p < 0.05: "
          f"{int((raw < 0.05).sum())}; smallest Holm-adjusted accuracy p {adjusted.min():.3f} ({source})", flush=True)


def cosine_part() -> None:
    import torch

    from dfer_pd.stage1.clip_assets import save_tiny_clip
    from dfer_pd.stage1.modeling_dfer_clip import DferClip, DferClipConfig

    with tempfile.TemporaryDirectory() as folder:
        model = DferClip(DferClipConfig(str(save_tiny_clip(Path(folder) / "clip")), num_frames=4,
                                        temporal_mlp_dim=128)).eval()
    clips = torch.rand(32, 4, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(clips)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            text = model.encode_text()
            half = model(clips, text_features=text)
    exact = half.video_features.double() @ half.text_features.double().T
    print(f"cosine under bf16 autocast (tiny CLIP, 32 clips, CPU): dtype {half.cosine.dtype}; max |cos - float64 "
          f"product of the same features| {float((half.cosine.double() - exact).abs().max()):.2e}; max |bf16 - fp32 "
          f"forward| {float((half.cosine.double() - full.cosine.double()).abs().max()):.2e}", flush=True)


PARTS = {"calibration": calibration_part, "intervals": intervals_part, "table3": table3_part, "cosine": cosine_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {list(PARTS)}")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    import dfer_pd

    print(f"code: {Path(inspect.getfile(dfer_pd)).parent.parent}", flush=True)
    from dfer_pd.stage2.runtime import running_on
    from dfer_pd.stage2.settings import RuntimeSettings

    with running_on(RuntimeSettings(accelerator="cpu", workers=1)):  # the networks on the CPU, in this process
        for part in args.parts.split(","):
            PARTS[part.strip()]()


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
