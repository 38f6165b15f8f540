"""`dfer-pd`: one command tree (jsonargparse subcommands); each command lives in ``dfer_pd/commands/<module>.py``.

A command module gives ``build_parser(*args)`` (its options; imports nothing heavy) and
``run(*args, cfg)`` (the work, importing torch and friends only then). Only the chosen command's
parser is built, so ``dfer-pd --help`` and ``dfer-pd <command> --help`` answer at once; ``train-dfer``
builds Lightning's parser, which needs Lightning itself, so its plain ``--help`` is cached
(:mod:`dfer_pd.commands.help_cache`).

User errors (a missing file, a bad manifest line, a corrupt checkpoint ...) end as one message on stderr
and exit code 2; ``--debug`` anywhere on the line, or ``DFER_PD_DEBUG=1``, shows the traceback instead.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from dataclasses import dataclass

from dfer_pd import __version__
from dfer_pd.common.errors import describe_user_error

PROG = "dfer-pd"


@dataclass(frozen=True)
class Command:
    """One `dfer-pd` subcommand: the module holding ``build_parser``/``run`` and its line in `dfer-pd --help`."""

    module: str
    help: str
    args: tuple[str, ...] = ()
    cache_help: bool = False  # its parser needs heavy imports: keep `<command> --help` fast from a cache
    early_check: str | None = None  # "module:function" checking the line's input paths before the parser is built


STAGE1_INPUTS = "dfer_pd.commands.early_checks:stage1_inputs"
FOLD_INPUTS = "dfer_pd.commands.early_checks:fold_inputs"
COMMANDS: dict[str, Command] = {
    "synth": Command("dfer_pd.commands.synth",
                     "write synthetic data: a DFEW-layout tree (synth dfew) or a PD cohort (synth cohort)"),
    "train-dfer": Command("dfer_pd.commands.train_dfer",
                          "stage 1: train the CLIP expression network on a clip dataset's fold (LightningCLI)",
                          cache_help=True, early_check=STAGE1_INPUTS),
    "train-dfer-folds": Command("dfer_pd.commands.train_dfer_folds",
                                "stage 1 on every official fold in turn (finished folds skipped), then the report",
                                cache_help=True, early_check=FOLD_INPUTS),
    "extract": Command("dfer_pd.commands.train_pd",
                       "score a cohort's videos with a stage-1 checkpoint into the intensity cache", ("extract",)),
    "train-pd": Command("dfer_pd.commands.train_pd",
                        "stage 2: subject-level cross-validation, then the screening model for diagnose", ("train-pd",)),
    "ablation": Command("dfer_pd.commands.train_pd", "the paper's Table 3 on the cohort's intensities", ("ablation",)),
    "export": Command("dfer_pd.commands.export",
                      "a stage-1 checkpoint as an ONNX graph (optionally int8) for screening on a laptop's CPU"),
    "diagnose": Command("dfer_pd.commands.diagnose",
                        "one person's four expression videos -> p(PD) and a report (research aid, not a diagnosis)"),
    "serve": Command("dfer_pd.commands.serve",
                     "a local web page for diagnose: upload or record the four videos (localhost only)"),
    "configs": Command("dfer_pd.commands.configs", "list the shipped experiment configs, or print one"),
    "demo": Command("dfer_pd.commands.demo", "the whole pipeline on synthetic data with a tiny CLIP (CPU, minutes)"),
}

DESCRIPTION = """Parkinson's disease screening from videos of facial expressions (research tool, not a diagnostic device).
`dfer-pd <command> --help` shows a command's options; every command takes --config (a YAML path or a shipped
config's name, see `dfer-pd configs`) and --print_config."""

DEBUG_FLAG = "--debug"

def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("DFER_PD_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def selected_command(argv: list[str]) -> str | None:
    """The subcommand named on the line: the first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(selected: str | None = None):
    """The command tree. Only ``selected``'s own parser is built (the others are listed with their help line)."""
    from jsonargparse import ArgumentParser

    # Parse errors are raised, not printed with the full usage: main() prints them as one message.
    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, default_env=False, exit_on_error=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}", help="print the version and exit")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the full traceback of an error (anywhere on the line; or set DFER_PD_DEBUG=1)")
    subcommands = parser.add_subcommands(required=True, dest="command", title="commands",
                                         description="`dfer-pd <command> --help` lists a command's options")
    for name, command in COMMANDS.items():
        if name != selected:
            subcommands.add_subcommand(name, ArgumentParser(description=command.help), help=command.help)
            continue
        module = importlib.import_module(command.module)
        sub = module.build_parser(*command.args)
        sub.prog = f"{PROG} {name}"
        subcommands.add_subcommand(name, sub, help=command.help)
        if hasattr(module, "add_subcommands"):  # jsonargparse adds nested levels after their parent
            module.add_subcommands(sub)
    return parser


def command_parser(name: str):
    """The parser of one command, as the tree holds it (for its help text)."""
    return build_parser(name)._subcommands_action._name_parser_map[name]


def run_command(name: str, cfg):
    command = COMMANDS[name]
    return importlib.import_module(command.module).run(*command.args, cfg)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [word for word in argv if word != DEBUG_FLAG]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning prints its own lines (its "lightning" logger has a handler): the root handler must not repeat them.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not record.name.startswith("lightning"))
    name = selected_command(argv)
    if name is not None and COMMANDS[name].cache_help and _wants_plain_help(argv, name):
        from dfer_pd.commands.help_cache import cached_help

        print(cached_help(name, lambda: command_parser(name).format_help()), end="")
        return 0
    from jsonargparse import ArgumentError

    try:
        if name is not None and COMMANDS[name].early_check and not _only_shows(argv):  # before Lightning is imported
            module, function = COMMANDS[name].early_check.split(":")
            getattr(importlib.import_module(module), function)(argv[argv.index(name) + 1:])
        parser = build_parser(name)
        try:
            cfg = parser.parse_args(argv)
        except ArgumentError as err:
            where = f"{PROG} {name}" if name else PROG
            message = option_names(str(err), name, argv) if name else str(err)
            print(f"{where}: error: {message}\n  see `{where} --help` for the options", file=sys.stderr)
            return 2
        result = run_command(cfg.command, cfg[cfg.command])
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs right here
        message = None if debug else describe_user_error(err)
        if message is None:
            raise
        print(f"{PROG} {name}: error: {message}" if name else f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    return int(result.get("exit_code", 0)) if isinstance(result, dict) else 0  # diagnose: 3 when INCONCLUSIVE


def option_names(message: str, name: str, argv: list[str]) -> str:
    """jsonargparse's keys as the user types them (``train-pd.cv.repeats`` -> ``--cv.repeats``), leaving alone
    the values given on the line (a config path ``x/train-pd.nosuch.yaml`` or ``synth.1.yaml`` stays as typed)."""
    values = {word.split("=", 1)[1] if word.startswith("-") else word for word in argv
              if "=" in word or not word.startswith("-")}
    values = sorted((v for v in values if name in v and v != name), key=len, reverse=True)
    pattern = re.compile(rf"\b{re.escape(name)}\.([\w.]+)")
    if not values:
        return pattern.sub(r"--\1", message)
    parts = re.split("(" + "|".join(map(re.escape, values)) + ")", message)
    return "".join(part if part in values else pattern.sub(r"--\1", part) for part in parts)


def _only_shows(argv: list[str]) -> bool:
    """The line asks for help or the resolved config (nothing runs, so no input path needs to exist)."""
    return any(word in ("-h", "--help") or word.startswith("--print_config") for word in argv)


def _wants_plain_help(argv: list[str], name: str) -> bool:
    """`dfer-pd <name> --help` exactly: no config files or options that would change the defaults shown."""
    rest = argv[argv.index(name) + 1:]
    return argv[: argv.index(name)] == [] and rest in (["--help"], ["-h"])


if __name__ == "__main__":
    raise SystemExit(main())
