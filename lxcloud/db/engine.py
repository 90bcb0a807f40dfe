"""Engine and sessions: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from lxcloud.db.tables import Base


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        # orjson: rows of instances carry JSON devices and limits, decoded on every list
        kw: dict[str, Any] = {"json_deserializer": orjson.loads,
                              "json_serializer": lambda v: orjson.dumps(v).decode()}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kw.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kw)
        # Reads go through their own engine: under WAL they never wait for a writer.
        self.read_engine: Engine = self.engine
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
            self.read_engine = create_engine(url, **kw)
            event.listen(self.read_engine, "connect", _sqlite_pragmas)
            event.listen(self.read_engine, "begin", _sqlite_begin_deferred)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The writers' session factory (services listen to its events)."""
        return self._sessions

    def create_all(self) -> None:
        """Brings the schema to the newest migration (Alembic; creates it on an empty database)."""
        self.upgrade("head")

    def upgrade(self, revision: str) -> None:
        """Brings the schema to `revision` (an Alembic revision id, or "head")."""
        from pathlib import Path

        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def create_all_unversioned(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any error."""
        with self._sessions() as s, s.begin():
            yield s

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only transaction (never blocks on writers under SQLite WAL)."""
        with self._read_sessions() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off; "begin" below issues BEGIN IMMEDIATE
    # so two writers never deadlock on a read->write upgrade.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")
