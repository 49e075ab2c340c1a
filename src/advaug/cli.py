"""The ``advaug`` command: the only module that parses arguments and prints for people.

Errors that a user can cause print one line (``advaug: error: ...``) and exit with 2 (usage) or
1 (runtime); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from advaug._version import __version__
from advaug.config import UNRESTRICTED_PRESETS
from advaug.errors import AdvaugError, ConfigError

EPILOG = """overrides are key=value pairs over the preset, e.g. classifier.epochs=3
data.name=cifar100 data.root=../shared/data/cifar-100-python data.verify=false
(see `advaug presets`)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like our own usage errors
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def _common(p: argparse.ArgumentParser, out_default: str | None = None) -> None:
    p.add_argument("--preset", default="demo", help="preset name or YAML path (default: demo)")
    p.add_argument("--out", default=out_default, help="run folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="advaug",
        description="Data augmentation with generative models under adversarial training.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"advaug {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("study", help="the whole comparison: GAN, classifiers, evaluation, report")
    _common(s, "runs/study")
    s.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate")

    s = sub.add_parser("train-gan", help="train the AC-GAN of a preset")
    _common(s, "runs/gan")

    s = sub.add_parser("train-classifier", help="train one classifier with one technique")
    _common(s, "runs/classifier")
    s.add_argument("--technique", help="none | fgsm | gan | unrestricted (overrides the preset)")
    s.add_argument("--seed", type=int, help="run seed (default: the preset's first seed)")
    s.add_argument("--gan", help="GAN run folder or checkpoint (gan / unrestricted techniques)")

    s = sub.add_parser("evaluate", help="evaluate a classifier checkpoint on the preset protocol")
    s.add_argument("checkpoint", help="classifier run folder or .pt file")
    _common(s, None)
    s.add_argument("--gan", help="GAN run folder: adds GAN-sample accuracy and UAE success")

    s = sub.add_parser("attack", help="run an attack against a classifier checkpoint")
    s.add_argument("kind", choices=["unrestricted"], help="attack kind")
    s.add_argument("checkpoint", help="classifier run folder or .pt file")
    s.add_argument("--gan", required=True, help="GAN run folder or checkpoint")
    s.add_argument("-n", "--num", type=int, default=500, help="examples to generate")
    s.add_argument("--steps", type=int, default=50, help="latent steps per example")
    s.add_argument("--preset-attack", default="fast", choices=sorted(UNRESTRICTED_PRESETS))
    s.add_argument("--targeted", action="store_true", help="target (source+1) mod K")
    s.add_argument("--reference", help="independent classifier run for the legitimacy check")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/attack", help="output folder")
    s.add_argument("--device", default="auto")

    s = sub.add_parser("export", help="write a classifier for other tools (weights + config.json)")
    s.add_argument("run", help="classifier run folder or .pt file")
    s.add_argument("--format", default="safetensors", choices=["safetensors"])
    s.add_argument("--out", help="output folder (default: RUN/export)")

    s = sub.add_parser("report", help="(re)write the report of a study folder")
    s.add_argument("run_dir", help="study folder")

    sub.add_parser("presets", help="list presets")
    sub.add_parser("models", help="list model names")
    return p


def _config(args: argparse.Namespace):
    from advaug.config import build_config

    return build_config(args.preset, args.overrides)


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from advaug.train.classifier import ClassifierJob, train_classifier

    cfg = _config(args)
    if args.technique:
        from advaug.config import from_dict, to_dict

        d = to_dict(cfg)
        d["classifier"]["augment"]["technique"] = args.technique
        cfg = from_dict(type(cfg), d)
    job = ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=cfg.classifier,
        seed=cfg.seeds[0] if args.seed is None else args.seed,
        gan=args.gan,
    )
    result = train_classifier(job, args.out)
    _print_result(result)
    return 0


def cmd_train_gan(args: argparse.Namespace) -> int:
    from advaug.train.gan import GANJob, train_gan

    cfg = _config(args)
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
    result = train_gan(job, args.out, collapse_threshold=cfg.evaluate.collapse_threshold)
    _print_result(result)
    return 0


def _print_result(result: dict[str, Any]) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
        print(json.dumps({k: v for k, v in result.items() if k != "runtime"}, indent=2))


def cmd_study(args: argparse.Namespace) -> int:
    from advaug.study import plan_study, run_study

    cfg = _config(args)
    if args.dry_run:
        print(plan_study(cfg, args.out).describe())
        return 0
    report = run_study(cfg, args.out)
    print(report.table_text)
    print(f"\nreport: {report.index_html}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from advaug.evaluate.suite import evaluate_checkpoint, format_evaluation

    cfg = _config(args)
    res = evaluate_checkpoint(args.checkpoint, cfg, gan=args.gan, out=args.out)
    print(format_evaluation(res))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from advaug.evaluate.uae import attack_command

    summary = attack_command(
        args.checkpoint,
        gan=args.gan,
        num=args.num,
        steps=args.steps,
        preset=args.preset_attack,
        targeted=args.targeted,
        reference=args.reference,
        seed=args.seed,
        out=Path(args.out),
        device=args.device,
    )
    print(summary)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from advaug.loading import export_classifier

    run = Path(args.run)
    out = Path(args.out) if args.out else (run.parent if run.is_file() else run) / "export"
    folder = export_classifier(run, out, args.format)
    print(f"exported {run} to {folder}/ (model.safetensors, config.json)")
    print(f"load it with: advaug.load_classifier({str(folder)!r})  # nn.Module, [0, 1] inputs")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from advaug.report import write_report

    report = write_report(Path(args.run_dir))
    print(report.table_text)
    print(f"\nreport: {report.index_html}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from advaug.config import list_presets

    print("\n".join(list_presets()))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from advaug.models import list_models

    print("\n".join(list_models()))
    return 0


COMMANDS = {
    "study": cmd_study,
    "train-gan": cmd_train_gan,
    "train-classifier": cmd_train_classifier,
    "evaluate": cmd_evaluate,
    "attack": cmd_attack,
    "export": cmd_export,
    "report": cmd_report,
    "presets": cmd_presets,
    "models": cmd_models,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        from advaug.log import setup_logging

        setup_logging(logging.DEBUG if args.debug else logging.INFO, show_progress=not args.quiet)
        if args.command is None:
            build_parser().print_help()
            return 2
        return COMMANDS[args.command](args)
    except AdvaugError as e:
        if debug:
            raise
        print(f"advaug: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("advaug: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: still one line without --debug
        if debug:
            raise
        print(
            f"advaug: error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1


def _one_line(e: BaseException) -> Any:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def entry() -> None:
    """The console script. Under torchrun (WORLD_SIZE > 1) the process ends through
    :func:`advaug.runtime.ddp.run_worker`, which skips the interpreter teardown where lingering gloo
    threads abort the process; ``torchrun --nproc_per_node=N -m advaug.cli train-classifier ...``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from advaug.runtime.ddp import run_worker

        run_worker(main)
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
