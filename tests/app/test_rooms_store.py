"""Rooms persistence: migrations, tokens stored hashed, rate limits and names (no app needed).

The store checks run on SQLite and on a real PostgreSQL server (started by the ``postgres``
fixture in conftest.py)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, inspect, text

from app.rooms import tokens
from app.rooms.limits import NAME_MAX, RateLimiter, clean_name
from app.rooms.store import LATEST, Full, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """The same store checks on the embedded default and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rooms.db'}"
    return request.getfixturevalue("postgres").new_database()


def schema(url) -> dict:
    """Tables, columns (in order, with types and defaults) and indexes, as the database reports them."""
    engine = create_engine(url)
    try:
        db = inspect(engine)
        return {t: ([(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in db.get_columns(t)],
                    sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in db.get_indexes(t)),
                    db.get_pk_constraint(t)["constrained_columns"])
                for t in sorted(db.get_table_names())}
    finally:
        engine.dispose()


def versions(url) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(text("SELECT version FROM schema_version")).all()
    finally:
        engine.dispose()


def test_migrate_from_v1_to_latest_and_rerun_is_noop(url):
    s = Store(url)
    assert s.version() == 0
    assert s.migrate(to=1) == 1
    v1 = schema(url)
    assert set(v1) == {"schema_version", "rooms", "members"}
    assert "hide_names" not in [c[0] for c in v1["rooms"][0]]
    # a room written by version 1 survives the migration
    with s.engine.begin() as c:
        c.execute(text("INSERT INTO rooms (code, token_hash, title, created_at, expires_at, locks, "
                       "leaderboard_revealed) VALUES ('ABCDEF', 'h', 'old', 1, 9e12, '[]', FALSE)"))
    assert s.migrate() == LATEST == 3
    latest = schema(url)
    assert set(latest) == {"schema_version", "rooms", "members", "results"}
    assert [c[0] for c in latest["rooms"][0]][-1] == "hide_names"
    assert [c[0] for c in latest["results"][0]][:4] == ["id", "room", "challenge_id", "member_id"]
    assert ("ix_members_room", ("room",), False) in latest["members"][1]
    assert [c[0] for c in latest["members"][0]][-2:] == ["secret_hash", "conn"]
    assert ("ix_results_room_challenge", ("room", "challenge_id"), False) in latest["results"][1]
    room = s.get_room("ABCDEF")
    assert room["title"] == "old" and room["hide_names"] is False and room["locks"] == []
    assert room["leaderboard_revealed"] is False and room["expires_at"] == 9e12
    assert s.migrate() == LATEST  # again: nothing to do, nothing changed
    assert Store(url).migrate() == LATEST  # another process starting later
    assert schema(url) == latest
    assert versions(url) == [(3,)]
    s.close()


def test_stores_starting_together_migrate_once(url):
    """Workers (or replicas) starting at once: each waits its turn, none fails, the schema is built once."""
    stores = [Store(url) for _ in range(4)]
    start = threading.Barrier(len(stores))

    def migrate(s):
        start.wait()
        return s.migrate()

    with ThreadPoolExecutor(len(stores)) as pool:
        assert list(pool.map(migrate, stores)) == [LATEST] * len(stores)
    assert versions(url) == [(LATEST,)]
    assert set(schema(url)) == {"schema_version", "rooms", "members", "results"}
    for s in stores:
        s.close()


def test_member_cap_and_best_result_hold_under_concurrent_writes(url):
    """Students joining at once never overfill a room; one member's results racing each other
    leave one row, the best; a code is given to one new room only."""
    s = Store(url)
    s.migrate()
    s.create_room("ABCDEF", "h", "t", ttl_s=60)
    n, cap = 12, 3
    start = threading.Barrier(n)

    def join(i):
        start.wait()
        try:
            return s.add_member("ABCDEF", f"m{i}", f"s{i}", cap=cap, active_s=90)
        except Full:
            return None

    def record(params):
        start.wait()
        return s.record_result("ABCDEF", "c1", "m0", "s0", params, 0.1, 0.9, 10, 3.0, "params")

    with ThreadPoolExecutor(n) as pool:
        counts = list(pool.map(join, range(n)))
        assert sorted(c for c in counts if c is not None) == [1, 2, 3]
        assert s.count_members("ABCDEF", 90) == cap == len(s.list_members("ABCDEF", 90))
        params = [30 + 7 * i % 13 for i in range(n)]  # all different
        written = list(pool.map(record, params))
    assert written[params.index(min(params))]
    assert [r["params"] for r in s.results("ABCDEF", "c1")] == [min(params)]

    def create(i):  # workers drawing the same new code at once: one gets it, the others retry
        start.wait()
        return s.create_room("QWERTY", f"h{i}", "t", ttl_s=60)

    with ThreadPoolExecutor(n) as pool:
        made = [r for r in pool.map(create, range(n)) if r is not None]
    assert len(made) == 1 and s.get_room("QWERTY")["token_hash"] == made[0]["token_hash"]
    s.close()


def test_members_cap_expiry_and_results(url):
    now = [1000.0]
    s = Store(url, clock=lambda: now[0])
    s.migrate()
    assert s.create_room("ABCDEF", "h", "t", ttl_s=60)["expires_at"] == 1060
    assert s.create_room("ABCDEF", "h2", "t", ttl_s=60) is None  # the code is taken
    assert s.add_member("ABCDEF", "m1", "a", cap=2, active_s=90) == 1
    assert s.add_member("ABCDEF", "m2", "b", cap=2, active_s=90) == 2
    with pytest.raises(Full):
        s.add_member("ABCDEF", "m3", "c", cap=2, active_s=90)
    s.remove_member("m1")
    assert s.add_member("ABCDEF", "m3", "c", cap=2, active_s=90) == 2
    # rank_by params: only fewer parameters replace a result; rank_by time: the first hit stands
    assert s.record_result("ABCDEF", "c1", "m2", "b", 25, 0.1, 0.9, 10, 3.0, "params")
    assert not s.record_result("ABCDEF", "c1", "m2", "b", 30, 0.05, 0.95, 20, 4.0, "params")
    assert s.record_result("ABCDEF", "c1", "m2", "b", 9, 0.2, 0.91, 30, 5.0, "params")
    assert s.record_result("ABCDEF", "c2", "m2", "b", 25, 0.1, 0.9, 10, 3.0, "time")
    assert not s.record_result("ABCDEF", "c2", "m2", "b", 3, 0.1, 0.9, 10, 1.0, "time")
    assert [(r["params"], r["epoch"]) for r in s.results("ABCDEF", "c1")] == [(9, 30)]
    assert [r["params"] for r in s.results("ABCDEF", "c2")] == [25]
    now[0] = 1061.0  # expired: gone for readers, and its code can be reused
    assert s.get_room("ABCDEF") is None
    assert s.create_room("ABCDEF", "h3", "new", ttl_s=60)["title"] == "new"
    assert s.results("ABCDEF", "c1") == [] and s.count_members("ABCDEF", 90) == 0
    s.close()


def test_a_member_is_taken_up_again_only_with_its_own_secret(url):
    s = Store(url)
    s.migrate()
    for code in ("ABCDEF", "GHJKMN"):
        s.create_room(code, "h", "t", ttl_s=60)
    s.add_member("ABCDEF", "m1", "Ada", cap=2, active_s=90, secret_hash=tokens.hash_token("s1"), conn="c1")
    s.add_member("ABCDEF", "m2", "Bob", cap=2, active_s=90, secret_hash=tokens.hash_token("s2"), conn="c2")
    s.add_member("GHJKMN", "m3", "Cy", cap=2, active_s=90, secret_hash=tokens.hash_token("s3"), conn="c3")
    # wrong secret, another member's secret, a member of another room, no such member
    for room, mid, secret in [("ABCDEF", "m1", "s2"), ("ABCDEF", "m1", ""), ("ABCDEF", "m2", "s1"),
                              ("ABCDEF", "m3", "s3"), ("GHJKMN", "m1", "s1"), ("ABCDEF", "m9", "s1")]:
        assert s.rejoin_member(room, mid, secret, "Eve", cap=2, active_s=90, conn="x") is None
    assert [(m["member_id"], m["name"]) for m in s.list_members("ABCDEF", 90)] == [("m1", "Ada"), ("m2", "Bob")]
    # the room is full (2), yet m1 itself may come back: it is not counted twice
    assert s.rejoin_member("ABCDEF", "m1", "s1", None, cap=2, active_s=90, conn="c1b") == ("Ada", 2)
    # the old connection leaving does not drop the member the new one holds
    assert not s.remove_member("m1", "c1", forget=False)
    assert s.count_members("ABCDEF", 90) == 2
    # leaving keeps the member (inactive) for a rejoin; forgetting deletes it
    assert s.remove_member("m1", "c1b", forget=False) and s.count_members("ABCDEF", 90) == 1
    assert s.rejoin_member("ABCDEF", "m1", "s1", "Ada L.", cap=2, active_s=90, conn="c1c") == ("Ada L.", 2)
    assert s.remove_member("m1", "c1c", forget=True)
    assert s.rejoin_member("ABCDEF", "m1", "s1", None, cap=2, active_s=90, conn="c1d") is None
    s.close()


def test_tokens_are_random_hashed_and_compared_in_constant_time(monkeypatch):
    t = tokens.new_token()
    assert len(t) >= 32 and len({tokens.new_token() for _ in range(100)}) == 100
    assert tokens.hash_token(t) == hashlib.sha256(t.encode()).hexdigest()
    calls = []
    real = tokens.hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert tokens.token_matches(t, tokens.hash_token(t))
    assert not tokens.token_matches(t + "x", tokens.hash_token(t))
    assert not tokens.token_matches(None, tokens.hash_token(t))
    assert len(calls) == 2
    code = tokens.new_code()
    assert len(code) == 6 and not set(code) & set("0O1IL")
    assert tokens.normalise_code(code.lower()) == code and tokens.normalise_code("ABC0EF") is None


def test_rate_limiter_refills():
    now = [0.0]
    rl = RateLimiter(3, clock=lambda: now[0])  # 3 per minute, burst 3
    assert [rl.take("a") for _ in range(3)] == [0, 0, 0]
    assert rl.take("a") == pytest.approx(20.0)  # one token per 20 s
    assert rl.take("b") == 0  # per address
    now[0] = 20.0
    assert rl.take("a") == 0 and rl.take("a") > 0


def test_names_are_trimmed_limited_and_kept_verbatim():
    assert clean_name(None) == "" and clean_name("  Ada \n") == "Ada"
    assert clean_name("<img src=x onerror=alert(1)>"[:NAME_MAX]) == "<img src=x onerror=alert"
    assert clean_name("a\u0000b\u202ec") == "abc"
    with pytest.raises(ValueError, match="name must be at most 24 characters, got 25"):
        clean_name("x" * 25)
    with pytest.raises(ValueError, match="name must be a string"):
        clean_name(5)
