"""``python -m bench``: every benchmark, or one of them (see ``--help``)."""

from __future__ import annotations

import argparse

from bench import burst, latency, reconcile_limits, reconcile_scale

# Each module offers SUMMARY, add_arguments(parser) and run_from_args(args); its docstring is the
# command's description.
BENCHMARKS = {
    "latency": latency,
    "burst": burst,
    "reconcile": reconcile_scale,
    "limits": reconcile_limits,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the sync. Without a command, every benchmark runs with its "
        "defaults; results are printed and saved as JSON under bench/results/.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {}
    for name, module in BENCHMARKS.items():
        parsers[name] = commands.add_parser(
            name,
            help=module.SUMMARY,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parsers[name])
    args = parser.parse_args(argv)
    if args.command is not None:
        BENCHMARKS[args.command].run_from_args(args)
        return
    for name, module in BENCHMARKS.items():
        module.run_from_args(parsers[name].parse_args([]))


if __name__ == "__main__":
    main()
