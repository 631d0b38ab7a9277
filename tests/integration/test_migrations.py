"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gatehouse.store.db import Database
from gatehouse.store.models import Base


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_store_from_before_change_control_keeps_its_active_policy(database_url):
    """0006 turns the version that was active into the first activation, so a gateway upgraded
    in place keeps enforcing it and rollback history starts there."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from gatehouse.policy import change_control, versions
    from gatehouse.policy.loader import load_policy_text
    from gatehouse.policy.starter import STARTER_POLICY
    from gatehouse.store.db import MIGRATIONS_DIR, Database

    db = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    loaded = load_policy_text(STARTER_POLICY)
    # what the starter policy hashed to before change_control existed: a new default field
    # must not change the hash of versions already stored
    assert loaded.version == "sha256:3ed8c7cf3746bd4006c1bf9a682dd3b783c79e73d14620d1680c5995a5e2fc31"
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.execute(text("INSERT INTO policy_versions (hash, document, source, state, created_at, created_by, "
                                "activated_at) VALUES (:hash, '{}', :source, 'active', CURRENT_TIMESTAMP, 'local:old', "
                                "CURRENT_TIMESTAMP)"), {"hash": loaded.version, "source": loaded.text})
    db.upgrade()
    active, activation = versions.active_policy(db)
    assert active.version == loaded.version and activation.kind == "bootstrap" and activation.actor == "local:old"
    assert change_control.activate_served_file(db, "local:new", loaded, "policy.yaml") == "unchanged"
    db.dispose()


def test_the_sqlite_store_and_its_journal_are_readable_by_their_owner_only(tmp_path):
    path = tmp_path / "store" / "gatehouse.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.write() as session:  # WAL mode: the write leaves -wal and -shm beside the file
        session.execute(text("UPDATE gatehouse_meta SET value = value WHERE name = 'revision'"))
    files = [p for p in path.parent.iterdir() if p.name.startswith("gatehouse.db")]
    assert {p.name for p in files} >= {"gatehouse.db"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files), [(p.name, oct(p.stat().st_mode)) for p in files]
    db.dispose()
    path.chmod(0o644)  # an older store, readable by others, is tightened when it is next opened
    Database(f"sqlite:///{path}").dispose()
    assert path.stat().st_mode & 0o777 == 0o600
