"""The catalog: the only place with SQL or file paths. `open_store(url)` picks the backend."""

from __future__ import annotations

from papersift.errors import ConfigError
from papersift.store.base import Stats, Store, Subscription, UpsertResult

__all__ = ["open_store", "Store", "Stats", "Subscription", "UpsertResult"]


def open_store(url: str, migrate: bool = False) -> Store:
    """The Store for a URL: a SQLite path or sqlite:/// URL (default backend), or postgresql://…"""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from papersift.store.postgres import PostgresStore
        except ImportError as e:
            raise ConfigError(
                f"the PostgreSQL backend needs psycopg 3 and psycopg_pool ({e.name} is missing)",
                hint="pip install 'papersift[postgresql]'",
            ) from None
        store = PostgresStore(url)
        if migrate:
            store.migrate()
        return store
    from papersift.store.sqlite import SQLiteStore

    store = SQLiteStore(url)
    if migrate:
        store.migrate()
    return store
