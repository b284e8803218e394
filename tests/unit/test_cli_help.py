"""Every command has --help; every exit code an error can produce is documented."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from node.cli import cli
from protocol import errors


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, path))
    return out


COMMANDS = all_commands(cli)


def test_the_commands_the_issue_names_exist():
    names = {" ".join(c) for c in COMMANDS}
    for required in (
        "ca init",
        "consortium-key new",
        "init",
        "peer add",
        "import",
        "serve",
        "round",
        "matches",
        "rounds",
        "audit verify",
        "demo",
    ):
        assert required in names, required


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    assert (cmd.help or cmd.short_help or "").strip(), f"{' '.join(path)} has no help text"


def test_every_error_exit_code_has_help_text():
    classes = [errors.CrossmatchError, *errors.CrossmatchError.__subclasses__()]
    for cls in classes:
        assert cls.exit_code in errors.EXIT_CODES, cls.__name__
    assert 0 in errors.EXIT_CODES and 2 in errors.EXIT_CODES
    assert len({c.exit_code for c in classes}) == len(classes), "exit codes must be distinct"


def test_errors_print_one_line_and_exit_with_their_code(tmp_path, capsys):
    from node.cli import main

    code = main(["rounds", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == errors.ConfigError.exit_code
    assert err.startswith("crossmatch: error: ") and err.count("\n") == 1
    assert "node.toml not found" in err
    assert "Traceback" not in err
