from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.audit import checkpoints
from gatehouse.core.config import Settings
from gatehouse.store.db import Database

from postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gatehouse.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()
    checkpoints.configure(None)  # a test that made this process sign (an app it started) leaves no signer behind


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("GATEHOUSE_HOME", str(path))
    monkeypatch.delenv("GATEHOUSE_DATABASE_URL", raising=False)
    monkeypatch.delenv("GATEHOUSE_POLICY", raising=False)
    monkeypatch.delenv("GATEHOUSE_PEPPER", raising=False)
    return path


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model, assembled once for the whole session."""
    from gatehouse.engines.model_files import ensure_builtin_model

    directory = tmp_path_factory.mktemp("models")
    ensure_builtin_model(directory)
    return directory


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env()


PEPPER = b"test-pepper"


def environment(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env
