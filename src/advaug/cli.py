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
import time
from pathlib import Path
from typing import Any

from advaug._version import __version__
from advaug.config import UNRESTRICTED_PRESETS
from advaug.errors import AdvaugError, ConfigError

_STARTED = time.perf_counter()  # a dry run's estimate counts what starting the command took

EPILOG = """overrides are key=value pairs over the preset, e.g. classifier.epochs=3
data.name=cifar100 data.root=../shared/data/cifar-100-python data.verify=false
(see `advaug presets`)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like our own usage errors
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def _flag_parser(before_command: bool) -> argparse.ArgumentParser:
    """``--debug`` and ``--quiet``, accepted before the command and after it. After it they
    have no default, so that they never undo the same flag given before the command."""
    p = argparse.ArgumentParser(add_help=False)
    kw: dict[str, Any] = {} if before_command else {"default": argparse.SUPPRESS}
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs", **kw)
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines", **kw)
    return p


def _common(
    p: argparse.ArgumentParser,
    out_default: str | None = None,
    preset_default: str = "demo",
) -> None:
    p.add_argument("--preset", help=f"preset name or YAML path (default: {preset_default})")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a complete config instead of a preset: a study's or a run's config.yaml, "
        "or what --print-config printed",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (what the run's config.yaml will hold) and exit",
    )
    p.add_argument("--out", default=out_default, help="run folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="advaug",
        description="Data augmentation with generative models under adversarial training.",
        epilog=EPILOG,
        parents=[_flag_parser(before_command=True)],
    )
    p.add_argument("--version", action="version", version=f"advaug {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    after = [_flag_parser(before_command=False)]

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=after, epilog=EPILOG)

    s = command("study", "the whole comparison: GAN, classifiers, evaluation, report")
    _common(s, "runs/study")
    s.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate")
    g = s.add_argument_group("stages as parallel jobs (README: Scale and speed)")
    g.add_argument("--launcher", choices=["local", "slurm"], help="run training stages as jobs")
    g.add_argument("--max-parallel", type=int, default=2, help="jobs at once (default 2)")
    g.add_argument("--retries", type=int, default=2, help="resubmissions of a failed job")
    g.add_argument("--jobs-dir", help="job files and logs (default: OUT/jobs)")
    g.add_argument("--partition", help="slurm partition")
    g.add_argument("--gpus-per-job", type=int, default=0, help="slurm: GPUs (DDP ranks) per job")
    g.add_argument("--cpus-per-job", type=int, default=2, help="slurm: CPUs per task")
    g.add_argument("--time-min", type=int, default=240, help="slurm: time limit in minutes")
    g.add_argument("--mem-gb", type=int, default=16, help="slurm: memory per job in GiB")

    s = command("train-gan", "train the AC-GAN of a preset")
    _common(s, "runs/gan")

    s = command("train-classifier", "train one classifier with one technique")
    _common(s, "runs/classifier")
    s.add_argument(
        "--technique", help="none | fgsm | pgd | gan | unrestricted (overrides the preset)"
    )
    s.add_argument("--seed", type=int, help="run seed (default: the preset's first seed)")
    s.add_argument("--gan", help="GAN run folder or checkpoint (gan / unrestricted techniques)")

    s = command("evaluate", "evaluate a classifier checkpoint on a protocol")
    s.add_argument("checkpoint", help="classifier run folder or .pt file")
    _common(s, None, "the run's own config.yaml, or its study's")
    s.add_argument("--gan", help="GAN run folder: adds GAN-sample accuracy and UAE success")

    s = command("attack", "run an attack against a classifier checkpoint")
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

    s = command("label", "human evaluation of UAEs: a local labelling page")
    s.add_argument("source", help="UAE folder or .safetensors, study folder, or labels .sqlite")
    s.add_argument("--rater", help="your name (the page asks when not given)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--summary", action="store_true", help="print what the answers say, and exit")
    g.add_argument("--export", metavar="DIR", help="write a crowd batch (CSV + PNGs), and exit")
    g.add_argument("--import", dest="import_csv", metavar="CSV", help="add crowd results")
    s.add_argument("--base-url", default="", help="where the exported images/ will be hosted")
    s.add_argument("--gan", help="GAN run that made the UAEs, if the one in their meta moved")
    s.add_argument("--reference", help="classifier run used as the automatic proxy")
    s.add_argument("--max-uae", type=int, help="label at most this many UAE successes (seeded)")
    s.add_argument("--seed", type=int, default=0, help="seed of the order and the controls")
    s.add_argument("--device", default="auto", help="device to build the set on")

    s = command("export", "write a classifier for other tools (weights + config.json)")
    s.add_argument("run", help="classifier run folder or .pt file")
    s.add_argument("--format", default="safetensors", choices=["safetensors"])
    s.add_argument("--out", help="output folder (default: RUN/export)")

    s = command("report", "(re)write the report of a study folder")
    s.add_argument("run_dir", help="study folder")

    command("presets", "list presets")
    command("models", "list model names")
    return p


def _config(args: argparse.Namespace, default_preset: str | None = "demo"):
    """The command's :class:`StudyConfig` from ``--preset`` or ``--config``, with overrides;
    and what a run's config.yaml adds (its GAN folder, ``ckpt_every_steps``)."""
    from advaug.config import build_config, build_config_from_file

    if args.config is not None and args.preset is not None:
        raise ConfigError("give --preset or --config, not both")
    if args.config is not None:
        return build_config_from_file(args.config, args.overrides)
    preset = default_preset if args.preset is None else args.preset
    return build_config(preset, args.overrides), {}


def _print_config(obj: Any) -> int:
    from advaug.config import dump_yaml

    print(dump_yaml(obj), end="")
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from advaug.train.classifier import ClassifierJob, train_classifier

    cfg, extras = _config(args)
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
        gan=args.gan if args.gan is not None else extras.get("gan"),
        ckpt_every_steps=int(extras.get("ckpt_every_steps") or 0),
    )
    if args.print_config:
        if job.gan and job.classifier.augment.technique in ("gan", "unrestricted"):
            import dataclasses

            from advaug.loading import checkpoint_sha256

            job = dataclasses.replace(job, gan_sha256=checkpoint_sha256(job.gan))
        return _print_config(job)
    result = train_classifier(job, args.out)
    _print_result(result)
    return 0


def cmd_train_gan(args: argparse.Namespace) -> int:
    from advaug.train.gan import GANJob, train_gan

    cfg, _ = _config(args)
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
    if args.print_config:
        return _print_config(job)
    result = train_gan(job, args.out, collapse_threshold=cfg.evaluate.collapse_threshold)
    _print_result(result)
    return 0


def _print_result(result: dict[str, Any]) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
        print(json.dumps({k: v for k, v in result.items() if k != "runtime"}, indent=2))


def cmd_study(args: argparse.Namespace) -> int:
    from advaug.study import plan_study, run_study

    cfg, _ = _config(args)
    if args.print_config:
        return _print_config(cfg)
    if args.dry_run:
        startup = time.perf_counter() - _STARTED  # importing torch and advaug, as a study would
        print(plan_study(cfg, args.out, startup_s=startup).describe())
        return 0
    launch = None
    if args.launcher:
        from advaug.launch import LaunchConfig

        launch = LaunchConfig(
            args.launcher,
            max_parallel=args.max_parallel,
            retries=args.retries,
            folder=args.jobs_dir,
            partition=args.partition,
            gpus_per_job=args.gpus_per_job,
            cpus_per_job=args.cpus_per_job,
            time_min=args.time_min,
            mem_gb=args.mem_gb,
        )
    report = run_study(cfg, args.out, launch=launch)
    print(report.table_text)
    print(f"\nreport: {report.index_html}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from advaug.evaluate.suite import evaluate_checkpoint, find_run_config, format_evaluation

    if args.preset is None and args.config is None:  # the run's own data and protocol
        args.config = find_run_config(args.checkpoint)
        if args.config is None:
            raise ConfigError(
                f"no config.yaml beside {args.checkpoint}; pass --preset NAME (or --config FILE) "
                "for the data and the evaluation protocol"
            )
        print(f"advaug: data and evaluation protocol from {args.config}", file=sys.stderr)
    cfg, _ = _config(args)
    if args.print_config:
        return _print_config(cfg)
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


def cmd_label(args: argparse.Namespace) -> int:
    from advaug import label

    if args.rater:
        label.check_rater(args.rater)
    src = label.resolve_source(args.source, gan=args.gan, reference=args.reference)
    opts = label.BuildOptions(seed=args.seed, max_uae=args.max_uae, device=args.device)
    store = label.open_or_build(src, opts)
    if args.summary:
        print(label.format_summary(label.summarize(store)))
        return 0
    if args.export:
        print(f"wrote {label.export_batch(store, args.export, args.base_url)} and images/")
        return 0
    if args.import_csv:
        added, skipped = label.import_results(store, args.import_csv)
        print(f"imported {added} answers into {store.path} ({skipped} were there already)")
        return 0
    server = label.LabelServer(store, host=args.host, port=args.port)
    if server.exposed:
        print(f"advaug: warning: listening on {args.host}: anyone who can reach this machine "
              "and has the URL can read the images and add answers", file=sys.stderr)  # fmt: skip
    print(f"labelling set {store.path}: {store.num_items} images")
    print(f"open: {server.url(args.rater)}")
    print("answers are saved as they are given; Ctrl-C stops the server", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(f"stopped; the answers are in {store.path}")
    finally:
        server.httpd.server_close()
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
    from advaug.config import build_config, list_presets, preset_summary

    names = list_presets()
    width = max(len(n) for n in names)
    for name in names:
        c = build_config(name)
        data = c.data.name + (f" (fallback: {c.data.fallback})" if c.data.fallback else "")
        shape = (
            f"{data}; {c.classifier.model.name} x {c.classifier.epochs} epochs; "
            f"AC-GAN {c.gan.iters} iterations; seeds {c.seeds}"
        )
        print(f"{name:<{width}}  {preset_summary(name)}")
        print(f"{'':<{width}}  {shape}")
    print("\nadvaug COMMAND --preset NAME --print-config shows every value of a preset.")
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
    "label": cmd_label,
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
