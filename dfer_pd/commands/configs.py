"""`dfer-pd configs [NAME]`: the experiment configs shipped with the package (also in the repository's experiments/).

Without NAME, lists them with what each is for; with NAME, prints that YAML, to read or to copy and edit:
`dfer-pd configs pd_lstm > my_cohort.yaml`. Every `--config` takes such a name or a path.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from dfer_pd.configs import ConfigFile, describe_config, resolve_config, shipped_configs


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd configs", description=__doc__)
    parser.add_argument("--config", action=ConfigFile, help="a YAML file with the option below (rarely useful here)")
    parser.add_argument("name", type=str | None, nargs="?", default=None,
                        help="a shipped config's name (e.g. pd_lstm, datasets/dfew7) to print; omit to list them")
    return parser


def run(cfg) -> str:
    if cfg.name:
        text = resolve_config(cfg.name).read_text(encoding="utf-8")
        print(text, end="")
        return text
    configs = shipped_configs()
    width = max(map(len, configs), default=0)
    lines = [f"{name:{width}s}  {describe_config(path)}" for name, path in configs.items()]
    print("\n".join(lines))
    return "\n".join(lines)


def main(args: list[str] | None = None) -> str:
    return run(build_parser().parse_args(args))
