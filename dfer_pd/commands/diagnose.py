"""`dfer-pd diagnose`: one person's four expression videos -> p(PD), intensities, quality flags, a report.

The videos are scored exactly as the screening model's training cohort was (its scoring contract:
stage-1 checkpoint, frames, face cropping, precision). A research screening aid, not a diagnosis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.configs import ConfigFile
from dfer_pd.stage1.quality_policy import QualityPolicy


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd diagnose", description=__doc__)
    parser.add_argument("--config", action=ConfigFile, help="a YAML file with any of the options below")
    parser.add_argument("--videos", type=str | None, default=None,
                        help="folder with one video per expression, named after it (happy.mp4, S01_anger.mov ...)")
    for expression in EXPRESSIONS:
        parser.add_argument(f"--{expression}", type=str | None, default=None,
                            help=f"path of the {expression} video (instead of, or overriding, --videos)")
    parser.add_argument("--stage1", type=str, required=True,
                        help="stage-1 checkpoint (.ckpt) the screening model's cohort was scored with, or its ONNX "
                             "export (.onnx from `dfer-pd export`: then neither the .ckpt nor the CLIP folder is needed)")
    parser.add_argument("--screening_model", type=str, required=True,
                        help="screening_model folder saved by `dfer-pd train-pd` (model.safetensors + screening.json)")
    parser.add_argument("--crop_faces", type=bool | None, default=None,
                        help="check only: the screening model's contract decides; a different value is refused")
    parser.add_argument("--face_detector", type=str | None, default=None, help="check only, as --crop_faces")
    parser.add_argument("--precision", type=str | None, default=None, help="check only, as --crop_faces")
    parser.add_argument("--runtime", type=Literal["torch", "onnx", "onnx-int8"] | None, default=None,
                        help="who runs stage 1: torch, or its ONNX export on the CPU (onnx, onnx-int8; made by "
                             "`dfer-pd export`, found beside the .ckpt); default: the export's own when --stage1 is "
                             "a .onnx file, else the screening model's")
    parser.add_argument("--device", type=str, default="cpu", help="torch device for stage 1: cpu, cuda, cuda:1 ...")
    parser.add_class_arguments(QualityPolicy, "quality", help="What makes a video unusable (the answer is then INCONCLUSIVE).")
    parser.add_argument("--out", type=str, default="runs/diagnose", help="folder for report.json, report.html and report.png")
    parser.add_argument("--subject_id", type=str | None, default=None,
                        help="the id printed on the report (default: anonymous); it stays in the report files")
    parser.add_argument("--json", type=bool, default=False,
                        help="print report.json on stdout instead of the summary (exit code 0: a verdict; 3: INCONCLUSIVE)")
    return parser


def run(cfg: Namespace) -> dict:
    from dfer_pd.common.errors import require_dir, require_file

    require_file(cfg.stage1, "--stage1", "the stage-1 checkpoint (.ckpt) the screening model's cohort was scored with,"
                                         " or its ONNX export (.onnx, from `dfer-pd export`)")
    require_dir(cfg.screening_model, "--screening_model",
                "the screening_model folder saved by `dfer-pd train-pd` (model.safetensors + screening.json)")
    from dfer_pd.screening.inputs import find_expression_videos

    videos = find_expression_videos(cfg.videos, **{e: cfg.get(e) for e in EXPRESSIONS})  # before torch is imported
    from dfer_pd.screening.diagnose import EXIT_INCONCLUSIVE, diagnose
    from dfer_pd.screening.report import write_report
    from dfer_pd.stage2.screening_model import ScreeningModel

    model = ScreeningModel.load(cfg.screening_model)
    result = diagnose(videos, cfg.stage1, model, device=cfg.device, crop_faces=cfg.crop_faces,
                      face_detector=cfg.face_detector, precision=cfg.precision, runtime=cfg.runtime,
                      quality=QualityPolicy(**cfg.quality.as_dict()))
    files = write_report(result, model, cfg.out, subject_id=cfg.subject_id)
    exit_code = EXIT_INCONCLUSIVE if result.inconclusive else 0
    if cfg.json:  # scripts read the report's JSON on stdout; the exit code still tells verdict from INCONCLUSIVE
        print(files["json"].read_text(), end="")
    else:
        print(result.headline())
        if result.severity_line():
            print(f"  {result.severity_line()}")
        print(f"  model: {model.performance()}")
        print(f"  {model.gate()}")
        print(f"  scored as: {result.contract.describe()}")
        for expression, q in result.quality.items():
            seen = (f"; recognised {q['recognised_expression']} ({q['recognised_probability']:.2f})"
                    if "recognised_expression" in q else "")
            print(f"  {expression:10s} {Path(videos[expression]).name}: {', '.join(q['flags']) or 'ok'}{seen}")
        print(f"report: {files['html']} ({files['json'].name}, {files['png'].name}); {result.seconds:.1f} s")
    return {"p_pd": result.p_pd, "positive": result.positive, "verdict": result.verdict, "reasons": result.reasons,
            "files": files, "headline": result.headline(), "exit_code": exit_code, "severity": result.severity_line()}


def main(args: list[str] | None = None) -> dict:
    """`dfer-pd diagnose ARGS` from Python (tests, the demo, the web page)."""
    return run(build_parser().parse_args(args))
