"""`dfer-pd`: one console script, one subcommand per job. Each subcommand lives in its own module."""

from __future__ import annotations

import logging
import sys

USAGE = """usage: dfer-pd <command> [options]   (dfer-pd <command> --help for its options)

commands:
  synth dfew      write a synthetic DFEW-layout tree (frame folders + split files)
  synth cohort    write a synthetic PD cohort (one mp4 per expression + manifest.csv)
  train-dfer      stage 1: train the CLIP expression network on a DFEW fold (LightningCLI)
  extract         score a cohort's videos with a stage-1 checkpoint into the intensity cache
  train-pd        stage 2: extraction through the cache, then subject-level k-fold CV
  ablation        the paper's Table 3 on the cached intensities
  diagnose        one person's four expression videos -> p(PD) and a report (research aid, not a diagnosis)
  demo            the whole pipeline on synthetic data with a tiny CLIP
"""


def _synth(argv: list[str]) -> None:
    from jsonargparse import auto_cli

    from dfer_pd.synthetic.cohort import make_pd_cohort
    from dfer_pd.synthetic.dfew import make_dfew_tree

    if not argv or argv[0] not in {"dfew", "cohort"}:
        raise SystemExit("usage: dfer-pd synth {dfew,cohort} ROOT [--option value ...]")
    target = {"dfew": make_dfew_tree, "cohort": make_pd_cohort}[argv[0]]
    path = auto_cli(target, args=argv[1:])
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "synth":
        _synth(rest)
    elif command == "train-dfer":
        from dfer_pd.commands.train_dfer import main as train_dfer

        train_dfer(rest)
    elif command in {"extract", "train-pd", "ablation"}:
        from dfer_pd.commands.train_pd import main as train_pd

        train_pd(command, rest)
    elif command == "diagnose":
        from dfer_pd.commands.diagnose import main as diagnose

        diagnose(rest)
    elif command == "demo":
        from dfer_pd.commands.demo import main as demo

        demo(rest)
    else:
        print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
