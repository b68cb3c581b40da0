"""Help text and commands that only look (frictions 5 and 7), on the real command line.

* ``--help`` shows plain metavars (``SPEC``, ``INT``), not typer's type tags
  (``<bool>``, ``{file}``); every option has a description; every ``--db`` shows the
  one database precedence, and README quotes the same text.
* ``status``, ``trials``, ``best``, ``export``, ``report`` and ``delete`` never create a
  database (nor a migration lock): a missing one is one error line, exit 2; a missing
  ``.yaml`` file is named as such, not looked up as a search.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.specfile import DATABASE_PRECEDENCE

README = Path(__file__).parents[2] / "README.md"
COMMANDS = [["run"], ["validate"], ["status"], ["trials"], ["best"], ["export"], ["report"],
            ["delete"], ["worker"], ["learner"], ["augment-preview"], ["operator"], ["crd"],
            ["db", "upgrade"]]


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="ma2ml")
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    """The help text without its box drawing, every run of whitespace one space."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_help_shows_plain_metavars_and_describes_every_option(args: list[str]) -> None:
    text = _help(args)
    assert not re.search(r"<(bool|str|int|path|float)[^>]*>", text), text
    assert "{" not in text, text
    for line in text.splitlines():  # an option's row: │ --name [-n] [METAVAR] description │
        row = re.match(r"│ (--[\w-]+)(,--[\w-]+)?(\s+-\w)?(\s+[A-Z]+( \[[^]]*\])?)?\s+(.*?)\s*│$",
                       line)
        if row:
            assert row.group(6), f"no description: {line}"
    if "--db" in text:
        assert DATABASE_PRECEDENCE in _flat(text), text


def test_trials_desc_and_json_are_described() -> None:
    text = _flat(_help(["trials"]))
    assert "--desc Sort in descending order." in text
    assert "--json Print the trials as a JSON list." in text
    assert "Usage: ma2ml trials [OPTIONS] [TARGET]" in text
    assert "Usage: ma2ml validate [OPTIONS] SPEC" in _flat(_help(["validate"]))


def test_readme_states_the_same_database_precedence() -> None:
    assert DATABASE_PRECEDENCE in " ".join(README.read_text().split())


LOOKING = [["status"], ["trials", "nosuch"], ["best", "nosuch"], ["export", "nosuch"],
           ["report", "nosuch"], ["delete", "nosuch", "--yes"]]


def test_looking_commands_never_create_a_database(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MA2ML_DATABASE_URL", raising=False)
    for args in LOOKING:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output == "error: database sqlite:///ma2ml.db: no such file " \
            "'ma2ml.db'\n", (args, result.output)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_spec_file_is_named_not_looked_up(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in ("best", "status", "trials"):
        result = CliRunner().invoke(app, [command, "missing.yaml"])
        assert result.exit_code == 2
        assert result.output.startswith("error: missing.yaml: no such spec file"), result.output
    assert list(tmp_path.iterdir()) == []
