"""Bad and unreachable database URLs: one line naming the URL (password masked) and the
cause, exit code 2, for every command that takes a database; nothing created on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ma2ml.store import DatabaseUrlError, Store, StoreUnavailableError

UNREACHABLE = "postgresql+psycopg2://nobody:s3cret@127.0.0.1:1/x"
BAD_URLS = {
    UNREACHABLE: "127.0.0.1:1/x is unavailable: connection to server",
    "notaurl": "'notaurl' is not a URL",
    "mysql://": "unsupported database 'mysql'",
    "postgresql+nosuchdriver://a@b/c": "driver 'postgresql+nosuchdriver' is not available",
}


def test_the_store_raises_one_typed_line_per_bad_url(tmp_path: Path) -> None:
    for url, expected in BAD_URLS.items():
        with pytest.raises((DatabaseUrlError, StoreUnavailableError)) as raised:
            Store(url)
        message = str(raised.value)
        assert expected in message and "\n" not in message, message
        assert "s3cret" not in message
    with pytest.raises(StoreUnavailableError):  # workers wait this one out (back-off)
        Store(UNREACHABLE)


def test_opening_an_existing_store_never_creates_one(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "ma2ml.db"
    with pytest.raises(DatabaseUrlError, match="no such file"):
        Store(f"sqlite:///{missing}", create=False)
    assert not (tmp_path / "sub").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(DatabaseUrlError, match="holds no ma2ml store"):
        Store(f"sqlite:///{empty}", create=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"], "no lock, no schema"
    with Store(f"sqlite:///{tmp_path / 'made.db'}"):
        pass
    with Store(f"sqlite:///{tmp_path / 'made.db'}", create=False) as store:
        assert store.list_searches() == []


# Commands that take a database, with the arguments that reach it. `ma2ml run` checks
# the data first, then opens the store: the built-in dataset is there, so the URL fails.
LOOKING = [["status"], ["trials", "x"], ["best", "x"], ["export", "x"], ["report", "x"],
           ["delete", "x", "--yes"], ["db", "upgrade"]]


def _invoke(args: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from ma2ml.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_every_looking_command_prints_one_line_and_exits_2(url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.chdir(tmp_path)
    for args in LOOKING:
        code, output = _invoke([*args, "--db", url])
        lines = output.strip().splitlines()
        assert code == 2, (args, output)
        assert len(lines) == 1 and BAD_URLS[url] in lines[0], (args, output)
        assert "s3cret" not in output
    assert list(tmp_path.iterdir()) == []


def _ma2ml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ma2ml", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120)


def test_run_worker_and_learner_refuse_a_bad_url_in_one_line(tmp_path: Path) -> None:
    """Real processes (each imports torch): one unreachable, one unsupported, one unparsable.
    An unreachable database is an error for ``run``; workers and learners wait it out
    (a process started during an outage must not crash-loop), so they get the bad URLs."""
    spec = Path(__file__).parents[2] / "examples" / "fashion-mnist.yaml"
    runs = {
        ("run", str(spec), "--db", UNREACHABLE): BAD_URLS[UNREACHABLE],
        ("worker", "--search", "x", "--db", "mysql://"): BAD_URLS["mysql://"],
        ("learner", "--search", "x", "--db", "notaurl"): BAD_URLS["notaurl"],
    }
    for args, expected in runs.items():
        result = _ma2ml(*args, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr[-2000:])
        assert "s3cret" not in result.stderr
    assert list(tmp_path.iterdir()) == []
