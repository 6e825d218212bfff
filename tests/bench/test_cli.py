"""``python -m bench``: every benchmark is a command with its options (running them is
``make bench``'s job, never the test suite's)."""

from __future__ import annotations

import pytest

from bench.__main__ import BENCHMARKS, main


def test_help_lists_the_four_benchmarks(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])

    assert exit_.value.code == 0
    listed = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    for name, module in BENCHMARKS.items():
        assert f" {name} {module.SUMMARY}" in listed


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["latency", "--help"], "--events N"),
        (["latency", "--help"], "--idle-seconds S"),
        (["burst", "--help"], "--per-event-contacts N"),
        (["reconcile", "--help"], "--contacts N [N ...]"),
        (["limits", "--help"], "--contacts N [N ...]"),
    ],
)
def test_each_command_describes_itself_and_its_options(capsys, argv, option):
    with pytest.raises(SystemExit):
        main(argv)

    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    assert option in shown
    # The module's docstring is the description, kept as written (its paragraphs, its lists).
    first_paragraph = BENCHMARKS[argv[0]].__doc__.split("\n\n")[0]
    assert " ".join(first_paragraph.split()) in shown


def test_an_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["warp-speed"])

    assert exit_.value.code == 2
    assert "invalid choice: 'warp-speed'" in capsys.readouterr().err
