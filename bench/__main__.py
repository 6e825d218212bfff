"""``python -m bench``: every benchmark that exists, or one of them (see ``--help``)."""

from __future__ import annotations

import argparse

from bench import reconcile_limits, reconcile_scale

NOT_YET = (
    "Not yet: 1. latency (one webhook → lead, p50/p95, beside a no-op DAG) and 2. burst (1,000 "
    "contacts → Marketo, beside per-event mode) need a live Airflow and relay; not built."
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the sync. Without a command, every benchmark runs; results "
        "are printed and saved as JSON under bench/results/.",
        epilog=NOT_YET,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    benchmarks = {
        "reconcile": ("3. reconciliation at scale (no limits)", reconcile_scale),
        "limits": ("4. the reconciliation under Marketo's rate limits", reconcile_limits),
    }
    for name, (summary, module) in benchmarks.items():
        command = commands.add_parser(name, help=summary, description=module.__doc__)
        command.add_argument(
            "--contacts",
            type=int,
            nargs="+",
            default=list(module.SIZES),
            metavar="N",
            help=f"contact counts to run (default: {' '.join(map(str, module.SIZES))})",
        )
    args = parser.parse_args(argv)
    if args.command is None:
        for _, module in benchmarks.values():
            module.run()
    else:
        benchmarks[args.command][1].run(args.contacts)


if __name__ == "__main__":
    main()
