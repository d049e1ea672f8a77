"""The ``initlab`` command: ``initlab compare CONFIG``, ``initlab diagnose CONFIG``, ``initlab list``,
``initlab spec NAME``, ``initlab serve`` (`initlab.server`).

`main` runs it in this process and returns its exit status; the console script (`initlab.console`) parses
the same arguments (`parser`) and runs them (`run`) after what must happen before TensorFlow loads. Only
``compare`` and ``diagnose`` import the library (and so TensorFlow): the other commands answer at once.

>>> main(["spec", "nielsen"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from initlab import catalog, server
from initlab.cluster import ClusterUnavailableError, RayAddress, parse_address
from initlab.spec_files import SpecError, builtin_spec_text, builtin_specs, spec_path
from initlab.tracking import TrackingLostError, TrackingUnavailableError, quiet_store_logging, ui_command, ui_url

CONFIG_HELP = (
    "a built-in spec's name (initlab list) or a spec file (.yaml/.yml/.json); a bare name is the built-in "
    "spec (./NAME for a file of that name)"
)


def _ray_address(address: str) -> RayAddress:
    """``--ray``'s address, parsed (`initlab.cluster.parse_address`) before anything starts."""
    try:
        return parse_address(address)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("Argument `address`", "ADDRESS")) from None


def parser() -> argparse.ArgumentParser:
    """The ``initlab`` command's arguments."""
    parser = argparse.ArgumentParser(prog="initlab", description="Compare weight initializations, tracked in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True)

    compare = commands.add_parser("compare", help="train every (scheme, seed) of a spec and track it in MLflow")
    compare.add_argument("config", help=CONFIG_HELP)
    compare.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./tracking/mlflow.db)"
    )
    compare.add_argument("--experiment", help="MLflow experiment name (default: the spec's name)")
    compare.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
    compare.add_argument("--epochs", type=int, help="override the spec's epochs")
    compare.add_argument(
        "--resume", action="store_true", help="re-open the last parent run of this spec; train only unfinished runs"
    )
    compare.add_argument(
        "--no-stack",
        dest="stack",
        action="store_false",
        help="train every model alone, in a loop of its own (side by side, a lane per core), not stacked",
    )
    compare.add_argument(
        "--ray",
        nargs="?",
        const=parse_address("local"),
        metavar="ADDRESS",
        type=_ray_address,
        help="run the work on Ray: a local instance (no ADDRESS), or the cluster at ADDRESS "
        "(auto, HOST:PORT, ray://HOST:PORT); needs pip install 'keras-initlab[ray]'",
    )
    compare.add_argument(
        "--histograms",
        action="store_true",
        help="also log every run's activation histograms at initialization (init/activations.png; "
        "about 0.2 s of CPU per run)",
    )

    diagnose = commands.add_parser("diagnose", help="per-layer statistics of every scheme of a spec at initialization")
    diagnose.add_argument("config", help=CONFIG_HELP)
    diagnose.add_argument("--seed", type=int, help="model seed (default: the spec's first seed)")
    diagnose.add_argument("--out", help="folder for the figures (default: diagnostics/<spec name>)")

    commands.add_parser("list", help="list the built-in specs, schemes and initializers")

    spec = commands.add_parser(
        "spec", help="print a built-in spec, to start one of your own from (initlab spec nielsen > my.yaml)"
    )
    spec.add_argument("name", help="a built-in spec's name (initlab list)")

    server.add_arguments(
        commands.add_parser(
            "serve",
            help="start an MLflow tracking server with the project's defaults (127.0.0.1:5000, "
            "tracking/mlflow.db; a login to listen beyond this machine)",
        )
    )
    return parser


def _list(args: argparse.Namespace) -> int:
    print("specs (initlab compare NAME; initlab spec NAME prints one):")
    for name, path in builtin_specs().items():
        print(f"  {name:<18} {_summary(path)}")
    print("\nschemes (kernel, bias):")
    for name, description in catalog.schemes().items():
        print(f"  {name:<18} {description}")
    print("\ninitializers (keras_initlab>NAME):")
    for name, summary in catalog.initializers().items():
        print(f"  {name:<18} {summary}")
    return 0


def _summary(spec_file: Path) -> str:
    """A spec file's first comment line, without the ``#``."""
    first = spec_file.read_text().splitlines()[0]
    return first.lstrip("# ").strip() if first.startswith("#") else ""


def _spec(args: argparse.Namespace) -> int:
    print(builtin_spec_text(args.name), end="")
    return 0


def _trains(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that trains: it imports the library (TensorFlow loads), whose backend check
    (`keras_initlab.backend.BackendError`) it reports like a spec error."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from keras_initlab.backend import BackendError

        try:
            return command(args)
        except BackendError as e:
            print(f"initlab {args.command}: {e}", file=sys.stderr)
            return 2

    return run


@_trains
def _compare(args: argparse.Namespace) -> int:
    from initlab.comparison import run_comparison
    from initlab.report import to_markdown
    from initlab.spec import ComparisonSpec

    config = spec_path(args.config)
    spec = ComparisonSpec.from_file(config)
    overrides = {k: v for k, v in (("seeds", args.seeds), ("epochs", args.epochs)) if v is not None}
    if overrides:
        spec = spec.replace(**overrides)
    outcome = run_comparison(
        spec,
        args.tracking_uri,
        args.experiment,
        resume=args.resume,
        stack=args.stack,
        progress=sys.stderr,
        spec_file=config,
        histograms=args.histograms,
        ray=args.ray,
    )
    if outcome.skipped:
        print(f"resumed: {len(outcome.skipped)} finished run(s) kept: {', '.join(outcome.skipped)}")
    print(to_markdown(outcome.summary), end="")
    print(
        f"\ntracked in {outcome.tracking_uri} (experiment {outcome.experiment_id}, parent run {outcome.parent_run_id})"
    )
    print(f"look: {ui_command(outcome.tracking_uri)}")
    print(f"  then open {ui_url(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id)}")
    if outcome.failures:
        print(f"\n{len(outcome.failures)} run(s) failed:", file=sys.stderr)
        for key, reason in outcome.failures.items():
            print(f"  {key}: {reason}", file=sys.stderr)
        return 1
    return 0


@_trains
def _diagnose(args: argparse.Namespace) -> int:
    from initlab.comparison import diagnose_spec
    from initlab.spec import ComparisonSpec, check_seed

    spec = ComparisonSpec.from_file(spec_path(args.config))
    if args.seed is not None:  # before the figures' folder is made
        check_seed(args.seed, "seed (--seed)")
    out = Path(args.out if args.out is not None else Path("diagnostics") / spec.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"initlab diagnose: cannot write the figures to {out} ({e.strerror}); pass --out DIR", file=sys.stderr)
        return 2
    tables = diagnose_spec(spec, out, seed=args.seed)
    for scheme, table in tables.items():
        print(f"## {scheme}\n\n{table.to_markdown()}\n")
    print(f"figures in {out}/: " + ", ".join(sorted(p.name for p in out.glob("*.png"))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``initlab`` command on ``argv`` (default ``sys.argv[1:]``), in this process; returns the exit status."""
    return run(parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The command of parsed arguments (`parser`); returns the exit status: 1 when runs failed, 2 when nothing
    could start (a bad spec, an unusable store or cluster), 130 after Ctrl-C and 143 after SIGTERM (the runs in
    flight KILLED, the finished ones kept), each said in one line."""
    quiet_store_logging()
    try:
        commands = {"list": _list, "spec": _spec, "compare": _compare, "diagnose": _diagnose, "serve": server.start}
        return commands[args.command](args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM during a comparison (`initlab.comparison.progress.Terminated`)
        status = getattr(e, "exit_status", 130)
        kept = "; the runs in flight are KILLED, the finished ones kept: rerun with --resume to finish"
        print(
            f"initlab {args.command}: {'terminated (SIGTERM)' if status == 143 else 'interrupted (Ctrl-C)'}"
            + (kept if args.command == "compare" else ""),
            file=sys.stderr,
        )
        return status
    except TrackingLostError as e:  # runs were under way: they failed, and --resume finishes them
        print(f"initlab {args.command}: {e}", file=sys.stderr)
        return 1
    except (SpecError, TrackingUnavailableError, ClusterUnavailableError) as e:
        print(f"initlab {args.command}: {e}", file=sys.stderr)
        return 2
