"""``ma2ml dashboard`` as a user runs it: finding the store like the other read commands,
refusing (exit 2) rather than creating a store that is not there, and starting without
torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.local.searches import default_db_url
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store

from .conftest import free_port, tiny_spec


def test_a_missing_store_is_refused_and_never_created(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MA2ML_DATABASE_URL", raising=False)
    for args, said in ((["missing.yaml"], "spec file missing.yaml does not exist"),
                       (["--db", "sqlite:///nope.db"], "no such file"),
                       ([], "ma2ml.db"),  # the default store of the read commands
                       (["--db", "mysql://user:secret@host/db"], "unsupported database"),
                       (["--port", "0"], "--port")):
        result = CliRunner().invoke(app, ["dashboard", *args])
        assert result.exit_code == 2, (args, result.output)
        assert said in result.stderr and "secret" not in result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []  # no database, no lock file, nothing


def test_serves_the_store_beside_the_spec_without_torch(tmp_path: Path) -> None:
    spec = tmp_path / "search.yaml"
    document = tiny_spec("cmd")
    spec.write_text(yaml.safe_dump(document))
    search = parse_spec(document)
    with Store(default_db_url(spec)) as store:
        store.create_search(search.key, spec_to_document(search))
    port = free_port()
    # The command says, as uvicorn starts, whether torch got imported (it must not).
    probe = ("import sys, uvicorn; serve = uvicorn.run\n"
             "def run(*args, **kwargs):\n"
             "    print('torch loaded:', 'torch' in sys.modules, flush=True)\n"
             "    serve(*args, **kwargs)\n"
             "uvicorn.run = run\n"
             "from ma2ml.cli import app\n"
             f"app(['dashboard', {str(spec)!r}, '--port', '{port}'])")
    server = subprocess.Popen([sys.executable, "-c", probe], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        listed = None
        deadline = time.monotonic() + 60
        while listed is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/searches",
                                            timeout=5) as response:
                    listed = json.load(response)
            except OSError:
                assert server.poll() is None, server.communicate()
                time.sleep(0.2)
        assert listed is not None, "the dashboard did not answer"
        assert [s["name"] for s in listed["searches"]] == ["default/cmd"]
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"(read-only) on http://127.0.0.1:{port}/" in out, err
    assert "torch loaded: False" in out


def test_help_is_plain_and_states_the_database_precedence() -> None:
    from ma2ml.specfile import DATABASE_PRECEDENCE

    result = CliRunner().invoke(app, ["dashboard", "--help"], prog_name="ma2ml")
    assert result.exit_code == 0
    flat = " ".join(result.output.replace("│", " ").split())
    assert "Usage: ma2ml dashboard [OPTIONS] [SPEC]" in flat
    assert DATABASE_PRECEDENCE in flat and "<str>" not in flat and "{" not in flat
    assert "--host STR Address to listen on" in flat and "[default: 127.0.0.1]" in flat
