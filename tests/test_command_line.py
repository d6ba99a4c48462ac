"""The tools' shared command-line parser: plain help, one error line, exit status 1."""

import pytest

from gdl.command_line import ArgumentParser, plain, plural


def test_plain_help_and_plurals():
    assert plain("writes ``<out>/x.npy`` and ``y``") == "writes <out>/x.npy and y"
    assert plain("read as :func:`gdl.data.pdb.read_pdb` reads it") == "read as gdl.data.pdb.read_pdb reads it"
    assert [plural(n, "point") for n in (0, 1, 2, 12000)] == ["0 points", "1 point", "2 points", "12,000 points"]


def test_usage_error_is_one_line_with_exit_status_1(capsys):
    parser = ArgumentParser(prog="tool", description="Does ``x``.")
    parser.add_argument("--n", type=int)
    assert "Does x." in parser.format_help()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--n", "many"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == ["error: argument --n: invalid int value: 'many' (see tool --help)"]
