"""``gatehouse init`` says where the store is; a password given in the URL's query string
(libpq takes ``?password=``) was printed in full, since only what came before an ``@`` was cut
(house rule: no secret in output; review r25)."""

from __future__ import annotations

import pytest

from gatehouse.cli.common import database_shown


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://gh:pw-secret@db.internal:5432/gatehouse?password=q-secret&sslmode=require",
     "postgresql+psycopg://db.internal:5432/gatehouse"),
    ("postgresql://db.internal/gatehouse?user=gh&password=q-secret", "postgresql://db.internal/gatehouse"),
    ("sqlite:////srv/gatehouse/gatehouse.db", "sqlite:////srv/gatehouse/gatehouse.db"),
    ("not a url", "(a database URL that does not parse)"),
])
def test_the_database_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert database_shown(url) == shown
