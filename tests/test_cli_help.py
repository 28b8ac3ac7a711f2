"""The command line's help is its reference: `fastner --help` and each command's
`--help` are compared with the copies in tests/fixtures/cli_help/, so a change to an
option, a default or a description is a deliberate one. After such a change, rewrite
the copies with

    UPDATE_CLI_HELP=1 .venv/bin/python -m pytest tests/test_cli_help.py

and review their diff."""
import os

import pytest

from fastner.cli import main

HELP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "cli_help")
COMMANDS = ["", "train", "evaluate", "tag", "tag-corpus", "ensemble", "serve", "serve-proxy"]


def help_text(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")          # argparse wraps to the terminal's width
    argv = ([command] if command else []) + ["--help"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c or "fastner")
def test_help_is_the_documented_reference(command, capsys, monkeypatch):
    text = help_text(command, capsys, monkeypatch)
    path = os.path.join(HELP_DIR, f"{command or 'fastner'}.txt")
    if os.environ.get("UPDATE_CLI_HELP"):
        os.makedirs(HELP_DIR, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{path} differs: see this file's docstring"


def test_every_command_has_its_help_copy():
    assert sorted(os.listdir(HELP_DIR)) == sorted(f"{c or 'fastner'}.txt" for c in COMMANDS)


@pytest.mark.parametrize("argv,missing", [
    (["train"], "the following arguments are required: --train, --dev, --out"),
    (["evaluate"], "the following arguments are required: --data"),
    (["tag-corpus"], "the following arguments are required: --input, --output"),
    ([], "the following arguments are required: command"),
])
def test_required_arguments_are_named_when_missing(argv, missing, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fastner") and missing in err
