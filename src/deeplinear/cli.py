"""``deeplinear`` on the command line: a thin layer over the Python API.

Arguments are checked before JAX is imported, so bad input fails in milliseconds with one line
and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer below 2**32, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deeplinear", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    rep = commands.add_parser(
        "reproduce",
        help="re-run the 2017 notebook's experiment",
        description="Re-run the notebook's experiment with its own random draws; write "
        "curves.parquet and both figures to --out and print a summary.",
    )
    rep.add_argument("--seed", type=_seed, default=0, help="NumPy legacy seed (default 0)")
    rep.add_argument("--out", help="results directory (default runs/reproduce-seed<N>)")
    rep.add_argument(
        "--rcond",
        choices=("modern", "2017", "both"),
        default="modern",
        help="LM's lstsq cut-off: modern NumPy (default), the notebook's 2017 rcond=-1, or both",
    )
    rep.add_argument("--force", action="store_true", help="replace a different experiment in --out")
    rep.add_argument("--check", action="store_true", help="also run the notebook in plain NumPy")
    return parser


def _reproduce(args) -> int:
    from . import rundir
    from .experiment import default_out, experiment_identity

    out = args.out or str(default_out(args.seed))
    # Claim the directory before the heavy imports: a bad --out fails fast.
    rundir.claim(out, experiment_identity(args.seed, args.rcond), args.force)

    from ._backend import enable_compilation_cache
    from .reproduce import reproduce
    from .summary import summary_lines

    enable_compilation_cache()
    result = reproduce(
        args.seed,
        out,
        rcond=args.rcond,
        force=True,  # claimed above
        check=args.check,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
        command=["deeplinear", *sys.argv[1:]],
    )
    print("\n".join(summary_lines(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"reproduce": _reproduce}[args.command](args)
    except UsageError as error:
        print(f"deeplinear: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deeplinear: interrupted; files already written are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
