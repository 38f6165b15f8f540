"""`dfer-pd serve`: a local web page for `dfer-pd diagnose` (upload or record the four expression videos).

Opens on http://127.0.0.1:PORT only (never on the network, no share link, Gradio's analytics off).
Each screening writes report.html, report.json and report.png under --out/<time>-<id>/, as diagnose does.
A research screening aid, not a diagnosis. Needs the `web` extra: pip install 'dfer-pd[web]'.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.configs import ConfigFile


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd serve", description=__doc__)
    parser.add_argument("--config", action=ConfigFile, help="a YAML file with any of the options below")
    parser.add_argument("--stage1", type=str, required=True,
                        help="stage-1 checkpoint (.ckpt) the screening model's cohort was scored with, or its ONNX export")
    parser.add_argument("--screening_model", type=str, required=True,
                        help="screening_model folder saved by `dfer-pd train-pd` (model.safetensors + screening.json)")
    parser.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (the page is never served to the network)")
    parser.add_argument("--device", type=str, default="cpu", help="torch device for stage 1: cpu, cuda, cuda:1 ...")
    parser.add_argument("--runtime", type=str | None, default=None,
                        help="who runs stage 1: torch, onnx or onnx-int8 (needs the `onnx` extra and `dfer-pd export`); "
                             "default: the export's own for a .onnx file, else the screening model's contract")
    parser.add_argument("--out", type=str, default="runs/serve", help="folder for the reports, one subfolder per screening")
    parser.add_argument("--open_browser", type=bool, default=False, help="open the page in the default browser")
    return parser


def run(cfg: Namespace):
    from dfer_pd.common.errors import UsageError, require_dir, require_file

    require_file(cfg.stage1, "--stage1", "the stage-1 checkpoint (.ckpt) the screening model's cohort was scored with, or its ONNX export")
    require_dir(cfg.screening_model, "--screening_model",
                "the screening_model folder saved by `dfer-pd train-pd` (model.safetensors + screening.json)")
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise UsageError("`dfer-pd serve` needs Gradio: pip install 'dfer-pd[web]'") from err
    from dfer_pd.screening.webapp import Screener, build_app, launch

    screener = Screener(cfg.stage1, cfg.screening_model, cfg.out, device=cfg.device, runtime=cfg.runtime)
    print(f"dfer-pd serve: http://127.0.0.1:{cfg.port} (localhost only; Ctrl+C stops it); reports in {cfg.out}")
    launch(build_app(screener), screener, port=cfg.port, open_browser=cfg.open_browser)


def main(args: list[str] | None = None):
    return run(build_parser().parse_args(args))
