"""The experiment configs that ship with the package, and `--config` that takes a config's name or a path.

The YAML files live in the repository's top-level ``experiments/`` (where users read them);
``dfer_pd/experiments`` links there, so the same files are package data inside the wheel. A name is a
file's path under that folder without ``.yaml``: ``pd_lstm``, ``datasets/dfew7``, ``sweeps/pd_lstm_sweep``
(a bare ``dfew7`` works too while it is unambiguous). Light module: the CLI parser imports it.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


def shipped_configs() -> dict[str, Path]:
    """Every shipped config, by name (its path under experiments/ without the suffix), sorted."""
    if not EXPERIMENTS_DIR.is_dir():
        return {}
    files = sorted(EXPERIMENTS_DIR.rglob("*.yaml"))
    return {path.relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix(): path for path in files}


def describe_config(path: Path) -> str:
    """What the experiment is: the file's opening comment, up to the end of its first sentence."""
    text = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or line.startswith("#  "):
            break
        text = f"{text} {line.lstrip('#').strip()}".strip()
        if text.endswith((".", ":", ")")):
            break
    return text.rstrip(":")


class ConfigNotFoundError(ValueError):
    """`--config` named neither an existing file nor a shipped config."""


def resolve_config(value: str | Path) -> Path:
    """An existing file as given; otherwise the shipped config of that name (``pd_lstm``, ``pd_lstm.yaml``,
    ``experiments/pd_lstm.yaml`` from any folder, ``dfew7`` for ``datasets/dfew7``)."""
    path = Path(value)
    if path.is_file():
        return path
    configs = shipped_configs()
    name = path.as_posix()
    if name.startswith("experiments/"):
        name = name[len("experiments/"):]
    name = name.removesuffix(".yaml").removesuffix(".yml")
    if name in configs:
        return configs[name]
    by_stem = [p for n, p in configs.items() if n.rsplit("/", 1)[-1] == name]
    if len(by_stem) == 1:
        return by_stem[0]
    raise ConfigNotFoundError(
        f"--config {value}: no such file, and no shipped config of that name. "
        f"Give a YAML path or one of: {', '.join(configs) or '(none shipped)'} (`dfer-pd configs` lists them)"
    )


class ConfigFile(ActionConfigFile):
    """`--config` as jsonargparse's ActionConfigFile, but a shipped config's name is accepted as well as a path.

    ``ignored`` top-level keys of a file are dropped before parsing: one YAML file serves several commands
    (extract, train-pd and ablation share experiments/pd_*.yaml), each parsing only its own option groups.
    """

    ignored: frozenset[str] = frozenset()

    @classmethod
    def ignoring(cls, keys) -> type[ConfigFile]:
        """This action for a command whose config files may hold the other commands' ``keys``."""
        return type(cls.__name__, (cls,), {"ignored": frozenset(keys)})

    def __call__(self, parser, cfg, values, option_string=None):
        try:
            values = str(resolve_config(values)) if _looks_like_a_path(values) else values
        except ConfigNotFoundError as err:
            raise TypeError(str(err)) from None
        if self.ignored and _looks_like_a_path(values):
            import yaml

            content = yaml.safe_load(Path(values).read_text(encoding="utf-8"))
            if isinstance(content, dict) and self.ignored & content.keys():
                values = yaml.safe_dump({k: v for k, v in content.items() if k not in self.ignored})
        self.apply_config(parser, cfg, self.dest, values)


def _looks_like_a_path(value) -> bool:
    """A name or path, as opposed to an inline YAML/JSON string such as '{"out_dir": "x"}'."""
    return isinstance(value, (str, Path)) and not any(c in str(value) for c in "{}:\n[]") and str(value).strip() != ""
