"""Older run stores (tests/fixtures/store-v1.sql, store-v2.sql) are migrated to take tags."""

import sqlite3

import pytest

from hfmagic.store.db import SCHEMA_VERSION, RunStore
from tests.support.store import FIXTURES


# -- the schema: tags arrived in v3 -----------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["store-v1.sql", "store-v2.sql"])
def test_older_stores_are_migrated_to_take_tags(tmp_path, fixture):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript((FIXTURES / fixture).read_text())
        before = [r[0] for r in con.execute("SELECT id FROM runs ORDER BY id")]
    store = RunStore(path)
    assert store.schema_version == SCHEMA_VERSION == 3
    with sqlite3.connect(path) as con:
        assert "tag" in [r[1] for r in con.execute("PRAGMA table_info(runs)")]
    runs = store.runs()
    assert sorted(r["id"] for r in runs) == before and all(r["tag"] is None for r in runs)
    store.tag(before[0], "kept from the old layout")
    assert store.get(before[0])["tag"] == "kept from the old layout" and len(store.get(before[0])["rows"]) >= 1
    assert RunStore(path).schema_version == 3  # opening again changes nothing
