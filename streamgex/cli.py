"""The ``streamgex`` command: argument parsing only; each command calls one public function."""

import argparse
import sys

from . import __version__
from .errors import StreamgexError


def _simulate(args):
    from .simulate import simulate

    paths = simulate(
        args.preset, args.out, seed=args.seed, samples=args.samples,
        overwrite=args.overwrite, quiet=args.quiet,
    )
    for key, path in paths.items():
        print(f"{key:7s} {path}")


def _ingest(args):
    from .ingest import ingest
    from .store import summary

    out = ingest(
        args.source, args.out, format=args.format, chunk_samples=args.chunk_samples,
        allow_missing=args.allow_missing, overwrite=args.overwrite, quiet=args.quiet,
    )
    if not args.quiet:
        print(summary(out))


def _info(args):
    from .store import summary

    print(summary(args.store))


def _demo(args):
    from .demo import demo

    demo(args.workdir, quiet=args.quiet)


def build_parser():
    from .formats import FORMATS
    from .ingest import MISSING_POLICIES
    from .simulate import PRESETS

    parser = argparse.ArgumentParser(
        prog="streamgex", description="Out-of-core gene expression inference on a desktop."
    )
    parser.add_argument("--version", action="version", version=f"streamgex {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        sub.add_argument("--quiet", action="store_true", help="no progress bars or summary")
        return sub

    sub = command("simulate", _simulate, "write a simulated GEO + 1000G dataset in the real formats")
    sub.add_argument("--preset", choices=list(PRESETS), default="demo")
    sub.add_argument("--out", required=True, help="output folder")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--samples", type=int, help="GEO profile count instead of the preset's")
    sub.add_argument("--overwrite", action="store_true", help="replace existing files")

    sub = command("ingest", _ingest, "convert a GCTX/GCT/GEUVADIS/TSV file into a Zarr store")
    sub.add_argument("source", help="raw expression file (text may be gzipped)")
    sub.add_argument("--out", required=True, help="Zarr store to write")
    sub.add_argument("--format", choices=FORMATS, default="auto")
    sub.add_argument("--chunk-samples", type=int, help="samples per chunk (default: ~32 MiB chunks)")
    sub.add_argument(
        "--allow-missing", choices=MISSING_POLICIES,
        help="store NaN/Inf/NA cells as NaN or 0 instead of rejecting the file",
    )
    sub.add_argument("--overwrite", action="store_true", help="replace an existing store")

    sub = command("info", _info, "describe a store")
    sub.add_argument("store")

    sub = command("demo", _demo, "run the pipeline on the built-in simulated data")
    sub.add_argument("--workdir", default="streamgex-demo", help="folder for the demo's files")
    return parser


def main(argv=None):
    """Run the CLI; returns the exit status (0 ok, 1 user or system error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except StreamgexError as exc:
        print(f"streamgex: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied: the machine, not a bug
        print(f"streamgex: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("streamgex: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


def entry_point():
    sys.exit(main())
