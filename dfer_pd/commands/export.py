"""`dfer-pd export`: a trained stage-1 checkpoint as one ONNX graph, for screening on a laptop's CPU.

The graph holds the vision tower, the gate, the temporal transformer, the class text features
(computed once, stored as constants) and the cosine; it is checked with onnx.checker and run once on
onnxruntime against PyTorch before it is written. `--int8 true` also writes a dynamically quantised
copy (int8 weights; faster, scores move by about 1e-3 in cosine). Then score with
`dfer-pd diagnose --stage1 best.onnx ...` (or `--runtime onnx` / `onnx-int8` beside the .ckpt), and
`dfer-pd extract --extraction.runtime onnx`. Needs the optional extra: pip install 'dfer-pd[onnx]'.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.configs import ConfigFile


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd export", description=__doc__)
    parser.add_argument("--config", action=ConfigFile, help="a YAML file with any of the options below")
    parser.add_argument("--checkpoint", type=str, required=True,
                        help="stage-1 checkpoint written by `dfer-pd train-dfer` (<run>/checkpoints/best.ckpt)")
    parser.add_argument("--out", type=str | None, default=None,
                        help="the .onnx file to write (default: beside the checkpoint, best.onnx; int8: best.int8.onnx)")
    parser.add_argument("--int8", type=bool, default=False,
                        help="also write a dynamically int8-quantised copy (onnxruntime.quantization)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset of the graph")
    return parser


def run(cfg: Namespace) -> dict:
    from dfer_pd.common.errors import UsageError, require_file

    require_file(cfg.checkpoint, "--checkpoint", "the stage-1 checkpoint (.ckpt) to export")
    if cfg.out is not None and not str(cfg.out).endswith(".onnx"):
        raise UsageError(f"--out {cfg.out}: name the file *.onnx")
    from dfer_pd.stage1.export import export_stage1

    result = export_stage1(cfg.checkpoint, cfg.out, int8=cfg.int8, opset=cfg.opset)
    print(result.summary())
    return {"onnx": result.path, "int8": result.int8_path, "max_abs_cosine_delta": result.max_abs_cosine_delta,
            "int8_max_abs_cosine_delta": result.int8_max_abs_cosine_delta}


def main(args: list[str] | None = None) -> dict:
    """`dfer-pd export ARGS` from Python (tests, benchmarks)."""
    return run(build_parser().parse_args(args))
