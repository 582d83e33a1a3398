"""Rooms, members and challenge results in SQL (SQLite by default, PostgreSQL when scaled out).

SQLAlchemy Core, synchronous and short: callers on the event loop use ``asyncio.to_thread``.
The schema is built by an ordered list of migrations, each in one transaction that also
records its number in ``schema_version``; running them again is a no-op.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import (JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, create_engine,
                        delete, event, func, insert, select, text, update)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from app.rooms.tokens import token_matches

# The latest schema, for queries (the migrations below build it; never ``create_all``).
meta = MetaData()
schema_version = Table("schema_version", meta, Column("version", Integer, nullable=False))
rooms = Table(
    "rooms", meta,
    Column("code", String(16), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("title", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("locks", JSON, nullable=False),
    Column("pushed", JSON, nullable=True),
    Column("challenge", JSON, nullable=True),
    Column("leaderboard_revealed", Boolean, nullable=False, default=False),
    Column("hide_names", Boolean, nullable=False, default=False),
)
members = Table(
    "members", meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("room", String(16), nullable=False),
    Column("member_id", String(32), nullable=False, unique=True),
    Column("name", String(64), nullable=False, default=""),
    Column("joined_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("conn", String(32), nullable=True),
)


def _results_table(m: MetaData) -> Table:
    return Table(
        "results", m,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("room", String(16), nullable=False),
        Column("challenge_id", String(32), nullable=False),
        Column("member_id", String(32), nullable=False),
        Column("name", String(64), nullable=False, default=""),
        Column("params", Integer, nullable=False),
        Column("test_loss", Float, nullable=True),
        Column("test_accuracy", Float, nullable=True),
        Column("epoch", Integer, nullable=False),
        Column("seconds", Float, nullable=False),
        Column("at", Float, nullable=False),
        Index("ix_results_room_challenge", "room", "challenge_id"),
    )


results = _results_table(meta)


def _v1(conn: Connection) -> None:
    """Rooms and members (the first release, without hidden names)."""
    m = MetaData()
    Table("rooms", m,
          Column("code", String(16), primary_key=True), Column("token_hash", String(64), nullable=False),
          Column("title", String(200), nullable=False), Column("created_at", Float, nullable=False),
          Column("expires_at", Float, nullable=False), Column("locks", JSON, nullable=False),
          Column("pushed", JSON, nullable=True), Column("challenge", JSON, nullable=True),
          Column("leaderboard_revealed", Boolean, nullable=False))
    Table("members", m,
          Column("id", Integer, primary_key=True, autoincrement=True), Column("room", String(16), nullable=False),
          Column("member_id", String(32), nullable=False, unique=True), Column("name", String(64), nullable=False),
          Column("joined_at", Float, nullable=False), Column("last_seen", Float, nullable=False))
    m.create_all(conn)


def _v2(conn: Connection) -> None:
    """Challenge results, the hide-names switch, and an index for member counts."""
    conn.execute(text("ALTER TABLE rooms ADD COLUMN hide_names BOOLEAN NOT NULL DEFAULT FALSE"))
    Index("ix_members_room", members.c.room).create(conn)
    m = MetaData()
    _results_table(m)
    m.create_all(conn)


def _v3(conn: Connection) -> None:
    """Members keep a hashed secret (to take themselves up again after a reconnect) and the
    connection that holds them (so a stale connection's leave cannot drop a rejoined member)."""
    conn.execute(text("ALTER TABLE members ADD COLUMN secret_hash VARCHAR(64)"))
    conn.execute(text("ALTER TABLE members ADD COLUMN conn VARCHAR(32)"))


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3]
LATEST = len(MIGRATIONS)


class Full(Exception):
    pass


def database_url(url: str | None, data_dir: str) -> str:
    if url:
        return url
    path = Path(data_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'nnplay.db'}"


class Store:
    def __init__(self, url: str, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.sqlite = url.startswith("sqlite")
        kw = {"connect_args": {"check_same_thread": False, "timeout": 30}} if self.sqlite else {"pool_pre_ping": True}
        self.engine: Engine = create_engine(url, **kw)
        if self.sqlite:
            self._sqlite_transactions()

    def _sqlite_transactions(self) -> None:
        """pysqlite commits DDL on its own and begins lazily; take over so a migration is one
        transaction, and "immediate" transactions (migrations, the member cap) take the write
        lock first: two workers starting at once then migrate one after the other. WAL is kept
        in the file; switching to it fails at once (no busy wait) while another connection
        writes, and that connection or a later one switches it."""

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi, _record):
            dbapi.isolation_level = None
            dbapi.execute("PRAGMA busy_timeout=30000")
            if dbapi.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                try:
                    dbapi.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError:
                    pass

        @event.listens_for(self.engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    def close(self) -> None:
        self.engine.dispose()

    # --- migrations --------------------------------------------------------------------

    def version(self) -> int:
        with self.engine.connect() as c:
            return self._version(c)

    @staticmethod
    def _lock_room(c: Connection, code: str) -> None:
        """Serialise writers to one room for the rest of the transaction. SQLite's immediate
        transaction already holds the database's write lock (and renders no FOR UPDATE);
        PostgreSQL's read-committed transactions would otherwise both count, then both insert."""
        c.execute(select(rooms.c.code).where(rooms.c.code == code).with_for_update())

    @staticmethod
    def _version(c: Connection) -> int:
        if not c.dialect.has_table(c, "schema_version"):
            return 0
        return c.execute(select(func.max(schema_version.c.version))).scalar() or 0

    def migrate(self, to: int = LATEST) -> int:
        """Apply the migrations after the recorded version, up to ``to``; returns the version."""
        while True:
            with self.engine.connect() as c:
                c.execution_options(immediate=True)
                with c.begin():
                    if not self.sqlite:  # serialise workers that start together
                        c.execute(text("SELECT pg_advisory_xact_lock(7007)"))
                    v = self._version(c)
                    if v >= to:
                        return v
                    if v == 0:
                        schema_version.create(c, checkfirst=True)
                    MIGRATIONS[v](c)
                    c.execute(delete(schema_version))
                    c.execute(insert(schema_version).values(version=v + 1))

    # --- rooms -------------------------------------------------------------------------

    def create_room(self, code: str, token_hash: str, title: str, ttl_s: float) -> dict | None:
        """The new room, or None if the code is taken (by a room not yet expired)."""
        now = self.clock()
        try:
            with self.engine.connect() as c:
                c.execution_options(immediate=True)
                with c.begin():
                    old = c.execute(select(rooms.c.expires_at).where(rooms.c.code == code)).first()
                    if old is not None:
                        if old.expires_at > now:
                            return None
                        self._delete(c, code)
                    self._purge_expired(c, now)
                    c.execute(insert(rooms).values(code=code, token_hash=token_hash, title=title, created_at=now,
                                                   expires_at=now + ttl_s, locks=[], pushed=None, challenge=None,
                                                   leaderboard_revealed=False, hide_names=False))
        except IntegrityError:  # PostgreSQL: another worker took the same code a moment ago
            return None
        return self.get_room(code)

    def get_room(self, code: str) -> dict | None:
        """The room unless unknown or expired."""
        with self.engine.connect() as c:
            row = c.execute(select(rooms).where(rooms.c.code == code)).mappings().first()
        if row is None or row["expires_at"] <= self.clock():
            return None
        return dict(row)

    def update_room(self, code: str, **values) -> dict | None:
        with self.engine.begin() as c:
            c.execute(update(rooms).where(rooms.c.code == code).values(**values))
        return self.get_room(code)

    def delete_room(self, code: str) -> None:
        with self.engine.begin() as c:
            self._delete(c, code)

    @staticmethod
    def _delete(c: Connection, code: str) -> None:
        for t in (results, members):
            c.execute(delete(t).where(t.c.room == code))
        c.execute(delete(rooms).where(rooms.c.code == code))

    def _purge_expired(self, c: Connection, now: float) -> None:
        # in code order, so two purges on PostgreSQL lock rows in the same order (no deadlock)
        q = select(rooms.c.code).where(rooms.c.expires_at <= now).order_by(rooms.c.code)
        for (code,) in c.execute(q).all():
            self._delete(c, code)

    # --- members -----------------------------------------------------------------------

    def add_member(self, room: str, member_id: str, name: str, cap: int, active_s: float,
                   secret_hash: str | None = None, conn: str | None = None) -> int:
        """Insert a member unless the room holds ``cap`` active ones (raises Full); returns
        the count including the new member."""
        now = self.clock()
        with self.engine.connect() as c:
            c.execution_options(immediate=True)
            with c.begin():
                self._lock_room(c, room)
                n = self._count(c, room, now - active_s)
                if n >= cap:
                    raise Full(cap)
                c.execute(insert(members).values(room=room, member_id=member_id, name=name, joined_at=now,
                                                 last_seen=now, secret_hash=secret_hash, conn=conn))
        return n + 1

    def rejoin_member(self, room: str, member_id: str, secret: str, name: str | None, cap: int, active_s: float,
                      conn: str) -> tuple[str, int] | None:
        """Take up ``member_id`` of ``room`` again if ``secret`` is its secret: the connection
        becomes ``conn``, the name changes unless None, results stay. Returns (name, active
        count) or None if there is no such member or the secret is wrong; raises Full (the
        member itself is not counted twice)."""
        now = self.clock()
        with self.engine.connect() as c:
            c.execution_options(immediate=True)
            with c.begin():
                self._lock_room(c, room)
                row = c.execute(select(members.c.name, members.c.secret_hash)
                                .where(members.c.room == room, members.c.member_id == member_id)).first()
                if row is None or not row.secret_hash or not token_matches(secret, row.secret_hash):
                    return None
                q = select(func.count()).select_from(members).where(
                    members.c.room == room, members.c.last_seen > now - active_s, members.c.member_id != member_id)
                n = c.execute(q).scalar() or 0
                if n >= cap:
                    raise Full(cap)
                name = row.name if name is None else name
                c.execute(update(members).where(members.c.room == room, members.c.member_id == member_id)
                          .values(name=name, last_seen=now, conn=conn))
        return name, n + 1

    def touch_member(self, member_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(members).where(members.c.member_id == member_id).values(last_seen=self.clock()))

    def rename_member(self, member_id: str, name: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(members).where(members.c.member_id == member_id).values(name=name, last_seen=self.clock()))

    def remove_member(self, member_id: str, conn: str | None = None, forget: bool = True) -> bool:
        """The member leaves: ``forget`` deletes it, else it is kept (inactive, its secret still
        valid) for a rejoin. With ``conn``, only if that connection still holds the member.
        True if it left."""
        where = [members.c.member_id == member_id] + ([members.c.conn == conn] if conn is not None else [])
        with self.engine.begin() as c:
            if forget:
                return c.execute(delete(members).where(*where)).rowcount > 0
            return c.execute(update(members).where(*where).values(last_seen=0.0, conn=None)).rowcount > 0

    def member_result(self, room: str, challenge_id: str, member_id: str) -> dict | None:
        q = select(results).where(results.c.room == room, results.c.challenge_id == challenge_id,
                                  results.c.member_id == member_id)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return dict(row) if row else None

    def count_members(self, room: str, active_s: float) -> int:
        with self.engine.connect() as c:
            return self._count(c, room, self.clock() - active_s)

    @staticmethod
    def _count(c: Connection, room: str, since: float) -> int:
        q = select(func.count()).select_from(members).where(members.c.room == room, members.c.last_seen > since)
        return c.execute(q).scalar() or 0

    def list_members(self, room: str, active_s: float) -> list[dict]:
        since = self.clock() - active_s
        q = (select(members.c.member_id, members.c.name, members.c.joined_at)
             .where(members.c.room == room, members.c.last_seen > since).order_by(members.c.id))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    # --- results -----------------------------------------------------------------------

    def record_result(self, room: str, challenge_id: str, member_id: str, name: str, params: int,
                      test_loss: float | None, test_accuracy: float | None, epoch: int, seconds: float,
                      rank_by: str) -> bool:
        """Write the member's result, or replace it if better (fewer parameters for
        rank_by=params; for rank_by=time the first hit stands). True if written."""
        where = (results.c.room == room, results.c.challenge_id == challenge_id, results.c.member_id == member_id)
        values = dict(name=name, params=params, test_loss=test_loss, test_accuracy=test_accuracy, epoch=epoch,
                      seconds=seconds, at=self.clock())
        with self.engine.connect() as c:
            c.execution_options(immediate=True)
            with c.begin():
                self._lock_room(c, room)
                old = c.execute(select(results.c.id, results.c.params).where(*where)).first()
                if old is None:
                    c.execute(insert(results).values(room=room, challenge_id=challenge_id, member_id=member_id,
                                                     **values))
                    return True
                if rank_by == "params" and params < old.params:
                    c.execute(update(results).where(results.c.id == old.id).values(**values))
                    return True
        return False

    def results(self, room: str, challenge_id: str) -> list[dict]:
        q = select(results).where(results.c.room == room, results.c.challenge_id == challenge_id)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]
