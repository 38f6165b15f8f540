"""Input paths checked straight from a command's line and config files, before its parser is built.

`train-dfer`'s parser is Lightning's, so building it imports torch and Lightning (seconds), and the run then
opens its W&B run before the data module looks at the dataset. The paths it is given (the dataset's root,
a checkpoint to resume or evaluate) are read here from the words and the YAML files in the order
LightningCLI applies them (the last one wins), so a wrong one answers at once, with nothing opened.
"""

from __future__ import annotations

from pathlib import Path

from dfer_pd.common.errors import require_dir, require_file

CONFIG_FLAGS = ("--config", "-c")
ROOT_FLAGS = ("--data.root", "--data.init_args.root")
STAGE1_FILES = {
    "--ckpt_path": "the checkpoint to resume from (<run>/checkpoints/last.ckpt of the interrupted run)",
    "--test_ckpt": "the checkpoint to evaluate (<run>/checkpoints/best.ckpt)",
}


def option_words(argv: list[str]) -> list[tuple[str, str]]:
    """``(flag, value)`` for every ``--flag value`` and ``--flag=value`` on the line, in order."""
    pairs = []
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            continue
        if "=" in word:
            flag, value = word.split("=", 1)
            pairs.append((flag, value))
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            pairs.append((word, argv[i + 1]))
    return pairs


def root_in_config(value: str) -> str | None:
    """``data.init_args.root`` (or ``data.root``) of a config file; None when it sets none or is not a readable file."""
    import yaml

    from dfer_pd.configs import ConfigNotFoundError, resolve_config

    try:
        content = yaml.safe_load(Path(resolve_config(value)).read_text(encoding="utf-8"))
    except (ConfigNotFoundError, OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # the parser reports it
    data = content.get("data") if isinstance(content, dict) else None
    if not isinstance(data, dict):
        return None
    init_args = data.get("init_args")
    root = init_args.get("root") if isinstance(init_args, dict) else None
    return str(data.get("root", root)) if data.get("root", root) is not None else None


def stage1_inputs(argv: list[str], checkpoints: bool = True) -> None:
    """`train-dfer`: the dataset's root is a folder, a resumed or evaluated checkpoint a file."""
    root = None
    for flag, value in option_words(argv):
        if flag in CONFIG_FLAGS:
            root = root_in_config(value) or root
        elif flag in ROOT_FLAGS:
            root = value
        elif flag in STAGE1_FILES and checkpoints:
            require_file(value, flag, STAGE1_FILES[flag])
    if root is not None:
        require_dir(root, "--data.root", "the dataset's root folder in its official layout "
                                         "(DFEW: the folder holding its split files and clips)")


def fold_inputs(argv: list[str]) -> None:
    """`train-dfer-folds`: the dataset's root (the command itself refuses a checkpoint: it sets one per fold)."""
    stage1_inputs(argv, checkpoints=False)
