"""Rooms persistence: migrations, tokens stored hashed, rate limits and names (no app needed)."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from sqlalchemy import text

from app.rooms import tokens
from app.rooms.limits import NAME_MAX, RateLimiter, clean_name
from app.rooms.store import LATEST, Full, Store


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'rooms.db'}"


def columns(path, table):
    with sqlite3.connect(path) as c:
        return [r[1] for r in c.execute(f"PRAGMA table_info({table})")]


def test_migrate_from_v1_to_latest_and_rerun_is_noop(tmp_path, url):
    s = Store(url)
    assert s.version() == 0
    assert s.migrate(to=1) == 1
    path = tmp_path / "rooms.db"
    assert "hide_names" not in columns(path, "rooms")
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT name FROM sqlite_master WHERE name='results'").fetchone() is None
    # a room written by version 1 survives the migration
    with s.engine.begin() as c:
        c.execute(text("INSERT INTO rooms (code, token_hash, title, created_at, expires_at, locks, "
                       "leaderboard_revealed) VALUES ('ABCDEF', 'h', 'old', 1, 9e12, '[]', 0)"))
    assert s.migrate() == LATEST == 2
    assert "hide_names" in columns(path, "rooms")
    assert columns(path, "results")[:4] == ["id", "room", "challenge_id", "member_id"]
    room = s.get_room("ABCDEF")
    assert room["title"] == "old" and room["hide_names"] is False and room["locks"] == []
    with sqlite3.connect(path) as c:
        schema = sorted(c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())
    assert s.migrate() == LATEST  # again: nothing to do, nothing changed
    assert Store(url).migrate() == LATEST  # another process starting later
    with sqlite3.connect(path) as c:
        assert sorted(c.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()) == schema
        assert c.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


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
