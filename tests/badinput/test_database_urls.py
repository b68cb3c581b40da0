"""Bad and unreachable database URLs: one line naming the URL (password masked) and the
cause, exit code 2, for every command that takes a database; nothing created on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ma2ml.store import DatabaseUrlError, Store, StoreUnavailableError

UNREACHABLE = "postgresql+psycopg2://nobody:s3cret@127.0.0.1:1/x"
BAD_URLS = {
    UNREACHABLE: "127.0.0.1:1/x is unavailable: connection to server",
    "notaurl": "'notaurl' is not a URL",
    "mysql://": "unsupported database 'mysql'",
    "postgresql+asyncpg://a@b/c": "driver 'postgresql+asyncpg' is not available",
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
