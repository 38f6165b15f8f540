"""`dfer-pd diagnose`: one person's four expression videos -> p(PD), intensities, quality flags, a report.

The videos are scored exactly as the screening model's training cohort was (its scoring contract:
stage-1 checkpoint, frames, face cropping, precision). A research screening aid, not a diagnosis.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser

from dfer_pd.common.constants import EXPRESSIONS


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd diagnose", description=__doc__)
    parser.add_argument("--videos", type=str | None, default=None, help="folder with one video per expression, named after it")
    for expression in EXPRESSIONS:
        parser.add_argument(f"--{expression}", type=str | None, default=None, help=f"path of the {expression} video")
    parser.add_argument("--stage1", type=str, required=True, help="stage-1 checkpoint the cohort was scored with")
    parser.add_argument("--screening_model", type=str, required=True, help="folder saved by `dfer-pd train-pd`")
    parser.add_argument("--crop_faces", type=bool | None, default=None,
                        help="check only: the screening model's contract decides; a different value is refused")
    parser.add_argument("--face_detector", type=str | None, default=None, help="check only, as --crop_faces")
    parser.add_argument("--precision", type=str | None, default=None, help="check only, as --crop_faces")
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--out", type=str, default="runs/diagnose")
    return parser


def main(args: list[str] | None = None) -> dict:
    from dfer_pd.screening.diagnose import diagnose, find_expression_videos
    from dfer_pd.screening.report import write_report
    from dfer_pd.stage2.screening_model import ScreeningModel

    cfg = build_parser().parse_args(args)
    videos = find_expression_videos(cfg.videos, **{e: cfg.get(e) for e in EXPRESSIONS})
    model = ScreeningModel.load(cfg.screening_model)
    result = diagnose(videos, cfg.stage1, model, device=cfg.device, crop_faces=cfg.crop_faces,
                      face_detector=cfg.face_detector, precision=cfg.precision)
    files = write_report(result, model, cfg.out)
    print(result.headline())
    print(f"  scored as: {result.contract.describe()}")
    for expression, q in result.quality.items():
        print(f"  {expression:10s} {Path(videos[expression]).name}: {', '.join(q['flags']) or 'ok'}")
    print(f"report: {files['html']} ({files['json'].name}, {files['png'].name}); {result.seconds:.1f} s")
    return {"p_pd": result.p_pd, "positive": result.positive, "files": files, "headline": result.headline()}
