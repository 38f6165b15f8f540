"""`dfer-pd synth dfew|cohort ROOT`: synthetic data to try every command on, with nothing downloaded.

Rendering runs on all CPUs unless ``--workers N`` says otherwise (1 = one process); the files are
byte-identical for any N.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from dfer_pd.configs import ConfigFile

TARGETS = {
    "dfew": "a synthetic DFEW in DFEW's official layout (frame folders + split files), for train-dfer",
    "cohort": "a synthetic PD/HC cohort: one mp4 per expression per subject + manifest.csv, for extract/train-pd",
}


def _writer(target: str):
    if target == "dfew":
        from dfer_pd.synthetic.dfew import make_dfew_tree

        return make_dfew_tree
    from dfer_pd.synthetic.cohort import make_pd_cohort

    return make_pd_cohort


def build_parser() -> ArgumentParser:
    return ArgumentParser(prog="dfer-pd synth", description=__doc__)


def add_subcommands(parser: ArgumentParser) -> None:
    """`synth dfew` and `synth cohort`, each with its writer's arguments (jsonargparse adds them after the parent)."""
    subcommands = parser.add_subcommands(required=True, dest="target", title="what to write")
    for target, help_line in TARGETS.items():
        sub = ArgumentParser(prog=f"dfer-pd synth {target}", description=help_line)
        sub.add_argument("--config", action=ConfigFile, help="a YAML file with any of the options below")
        sub.add_function_arguments(_writer(target), as_positional=True)
        # All CPUs by default: the files are the same for any number of workers, so only the wait differs.
        sub.set_defaults(workers=0)
        subcommands.add_subcommand(target, sub, help=help_line)


def run(cfg) -> str:
    target = cfg.target
    options = {k: v for k, v in cfg[target].as_dict().items() if k not in {"config", "__path__"}}
    path = _writer(target)(**options)
    print(f"wrote {path}")
    return str(path)


def main(args: list[str] | None = None) -> str:
    parser = build_parser()
    add_subcommands(parser)
    return run(parser.parse_args(args))
