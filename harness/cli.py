"""Command line: ``python -m harness <verb>``; each verb maps to one module (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
import time

from harness.assignment import DEFAULT_ASSIGNMENT, AssignmentError, bundled_assignments, load_assignment
from harness.data import ENV_DATA, DataNotFound
from harness.training import DeviceError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--assignment",
        default=DEFAULT_ASSIGNMENT,
        help=f"bundled assignment ({', '.join(bundled_assignments())}) or a .toml path (default: %(default)s)",
    )
    p.add_argument("--profile", default="full", help="full | quick | smoke, as the assignment defines (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--data", help=f"MNIST root with MNIST/raw/ (default: ${ENV_DATA}, else the user cache, downloading)")
    p.add_argument("--cache", help="cache folder (default: $HARNESS_CACHE, else $XDG_CACHE_HOME/harness or ~/.cache/harness)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for CI and logs)")


def cmd_reference(args: argparse.Namespace) -> int:
    from harness.cache import cache_root
    from harness.data import load_mnist
    from harness.reference import build_reference, table
    from harness.training import resolve_device

    a = load_assignment(args.assignment)
    profile = a.profile(args.profile)
    device = resolve_device(args.device)
    data = load_mnist(args.data)
    if not args.quiet:
        print(
            f"reference for {a.meta.id}, profile {profile.name} ({profile.description}), device {device}, "
            f"data {data.source.root} ({data.source.origin})",
            file=sys.stderr,
        )
    started = time.perf_counter()
    result = build_reference(a, profile, data, device, cache_root(args.cache), force=args.force, quiet=args.quiet)
    print(table(result))
    if result.classifier_accuracy < a.metrics.classifier_min_accuracy:
        print(
            f"warning: the metrics classifier reaches {result.classifier_accuracy:.2%} test accuracy, below the "
            f"assignment's minimum {a.metrics.classifier_min_accuracy:.0%}: sample metrics are less trustworthy",
            file=sys.stderr,
        )
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Grade and report the auto-encoder / beta-VAE homework on MNIST.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    p = verbs.add_parser(
        "reference",
        help="train (or read from cache) the reference AE, VAEs and beta search; print their metrics",
        description="Train the reference AE, the fixed-beta VAEs and a beta search from the assignment; "
        "results are cached (docs/reference.md).",
    )
    _common(p)
    p.add_argument("--force", action="store_true", help="retrain even when the cache has this reference")
    p.set_defaults(func=cmd_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AssignmentError, DataNotFound, DeviceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
