"""``gatehouse init`` says where the store is; a password given in the URL's query string
(libpq takes ``?password=``) was printed in full, since only what came before an ``@`` was cut
(house rule: no secret in output; review r25)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatehouse.cli import main
from gatehouse.cli.common import console, database_shown
from gatehouse.core.config import Settings


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://gh:pw-secret@db.internal:5432/gatehouse?password=q-secret&sslmode=require",
     "postgresql+psycopg://db.internal:5432/gatehouse"),
    ("postgresql://db.internal/gatehouse?user=gh&password=q-secret", "postgresql://db.internal/gatehouse"),
    ("sqlite:////srv/gatehouse/gatehouse.db", "sqlite:////srv/gatehouse/gatehouse.db"),
    ("not a url", "(a database URL that does not parse)"),
])
def test_the_database_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert database_shown(url) == shown


class _Db:
    def dispose(self) -> None:
        pass


def test_init_prints_no_password_from_the_query_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_HOME", str(tmp_path))
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", "postgresql://db.internal/gatehouse?password=q-secret")
    monkeypatch.setattr(main, "open_db", lambda: _Db())
    monkeypatch.setattr(main, "ensure_builtin_model", lambda models: "gemma")
    monkeypatch.setattr(main.checkpoints, "ensure_signing_key", lambda config: None)
    with console.capture() as captured:
        main._initialise(Settings.from_env())
    assert "database ready: postgresql://db.internal/gatehouse" in captured.get()
    assert "q-secret" not in captured.get()
