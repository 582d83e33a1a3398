"""Property-based fuzzing of the websocket message validator (``app.ws.parse_message``).

Any client text must give a ``Command`` or a ``BadMessage`` / ``ConfigError`` whose message
is non-empty and (config errors) starts with the name of the field at fault; never any other
exception (which would escape ``serve_session``, log a traceback and drop the connection).
A TestClient test then sends a few hundred random bad messages to one live session and checks
that it still trains and that a second session was not disturbed.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from app.main import create_app
from app.session import Command, Session
from app.settings import Settings
from app.ws import TYPES, BadMessage, parse_message
from core.config import DEFAULT_LIMITS, Config, ConfigError, json_schema, parse_config
from tests.app.conftest import wait_ready
from tests.app.wsutil import frame_where, recv

# No example database, and Hypothesis' other caches outside the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "nnplay-hypothesis")
FUZZ = hsettings(max_examples=250, deadline=None, database=None, derandomize=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- strategies --------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-10, 10)
           | st.floats(allow_nan=True, allow_infinity=True) | st.floats(-20, 20) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=16)

SCHEMA = json_schema()


def _resolve(prop: dict) -> dict:
    ref = prop.get("$ref")
    return SCHEMA["$defs"][ref.rsplit("/", 1)[1]] if ref else prop


def _around(lo: float, hi: float, integer: bool):
    """In range, at and just past the bounds, far outside, and non-finite."""
    span = hi - lo or 1
    edges = [lo, hi, lo - span * 1e-3, hi + span * 1e-3, lo - 1, hi + 1, -1e300, 1e300]
    inside = st.integers(int(math.ceil(lo)), int(hi)) if integer else st.floats(lo, hi)
    return st.one_of(inside, st.sampled_from([int(e) if integer else e for e in edges]),
                     st.sampled_from([math.nan, math.inf, -math.inf, True, "1", None]))


def schema_value(prop: dict, depth: int = 0):
    """Values drawn from one JSON-schema property: mostly plausible, sometimes just wrong."""
    prop = _resolve(prop)
    opts = []
    if "anyOf" in prop:
        opts += [schema_value(p, depth) for p in prop["anyOf"]]
    if "enum" in prop:
        opts.append(st.sampled_from(list(prop["enum"]) + ["bogus", "", "SGD"]))
    if "const" in prop:
        opts.append(st.just(prop["const"]))
    if "minimum" in prop and "maximum" in prop:
        opts.append(_around(prop["minimum"], prop["maximum"], prop.get("type") == "integer"))
    t = prop.get("type")
    if t == "boolean":
        opts.append(st.booleans())
    if t == "number" and "minimum" not in prop:
        opts.append(st.floats(-2, 2) | st.sampled_from([math.nan, math.inf]))
    if t == "null":
        opts.append(st.none())
    if t == "array" and depth < 3:
        opts.append(st.lists(schema_value(prop.get("items", {}), depth + 1), max_size=8))
    if t == "object" or "properties" in prop:
        fields = {k: schema_value(v, depth + 1) for k, v in prop.get("properties", {}).items()}
        opts.append(st.fixed_dictionaries({}, optional=fields)
                    | st.fixed_dictionaries({}, optional={**fields, "bogus": JSON}))
    opts.append(JSON)
    return st.one_of(opts)


FIELDS = list(SCHEMA["properties"])
PATCH = st.dictionaries(st.sampled_from(FIELDS), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: schema_value(SCHEMA["properties"][k]) for k in keys}))
PATCH_WITH_UNKNOWN = st.one_of(PATCH, st.builds(lambda p, extra: {**p, **extra}, PATCH,
                                                st.dictionaries(st.text(max_size=8), JSON, max_size=2)))
POINT = st.fixed_dictionaries({}, optional={"x1": _around(-6, 6, False), "x2": _around(-6, 6, False),
                                            "label": _around(-1, 4, False), "subset": st.sampled_from(["train", "test", "x"]),
                                            "z": SCALARS})
ANY_TYPE = st.sampled_from(list(TYPES) + ["dance", "", "PATCH"]) | JSON


def message_for(kind: str):
    extra = {"id": JSON, "junk": JSON}
    per_type = {
        "config": {"config": PATCH_WITH_UNKNOWN | JSON},
        "patch": {"patch": PATCH_WITH_UNKNOWN | JSON},
        "step": {"epochs": _around(1, 1000, True) | JSON},
        "reset": {"seed": _around(0, 2**31 - 1, True)},
        "regenerate": {"seed": _around(0, 2**31 - 1, True) | JSON},
        "speed": {"epochs_per_frame": _around(1, 32, True) | st.just("auto") | JSON},
        "set_weight": {"layer": _around(0, 2, True), "kind": st.sampled_from(["w", "b", "x"]) | JSON,
                       "i": _around(0, 7, True), "j": _around(0, 4, True), "value": _around(-100, 100, False)},
        "add_points": {"points": st.lists(POINT, max_size=4) | st.lists(POINT, min_size=1000, max_size=1001) | JSON},
        "remove_point": {"x1": _around(-6, 6, False), "x2": _around(-6, 6, False)},
        "export": {"format": st.sampled_from(["keras", "pytorch", "jax", "json", "npz", "onnx"]) | JSON},
    }.get(kind, {})
    return st.fixed_dictionaries({"type": st.just(kind)}, optional={**per_type, **extra})


MESSAGE = st.sampled_from(list(TYPES)).flatmap(message_for) | st.fixed_dictionaries({"type": ANY_TYPE}, optional={"x": JSON})


@st.composite
def message_text(draw) -> str:
    """Serialised messages (NaN/Infinity as text), sometimes mangled at the text level."""
    obj = draw(MESSAGE | JSON)
    text = json.dumps(obj)  # allow_nan: NaN, Infinity, -Infinity appear as bare tokens
    how = draw(st.integers(0, 9))
    if how == 0:
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif how == 1:
        d = draw(st.integers(1, 3000))
        text = '{"type": "patch", "patch": {"seed": ' + "[" * d + "]" * d + "}}"
    elif how == 2:
        text = '{"type": "step", "epochs": ' + "9" * draw(st.integers(4000, 6000)) + "}"
    elif how == 3:
        text = draw(st.text(max_size=40))
    return text


# --- the property -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def session(engine):
    return Session(1, engine, parse_config({}), lambda s: None)


def roots(text: str) -> set[str]:
    """Names a config error may start with: fields, the containers, and the user's own keys."""
    names = set(Config.model_fields) | {"config", "patch", "points"}
    try:
        msg = json.loads(text)
    except Exception:
        return names
    if isinstance(msg, dict):
        for key in ("patch", "config"):
            if isinstance(msg.get(key), dict):
                names |= set(msg[key])
    return names


def check(text: str, session: Session) -> None:
    try:
        cmd = parse_message(text, session, DEFAULT_LIMITS)
    except ConfigError as err:
        assert err.messages and all(isinstance(m, str) and m.strip() for m in err.messages), err.messages
        first = err.messages[0]
        # An unknown key is named as sent, quoted when it is empty or not a plain name.
        named = {r if r.isidentifier() else json.dumps(r)[:60] for r in roots(text)}
        assert any(first.startswith(r) for r in named), first
    except BadMessage as err:
        assert str(err).strip()
    else:
        assert isinstance(cmd, Command) and cmd.kind in TYPES


@FUZZ
@given(text=message_text())
def test_parse_message_never_raises_anything_else(session, text):
    check(text, session)


@FUZZ
@given(patch=PATCH_WITH_UNKNOWN)
def test_random_patches_from_the_schema(session, patch):
    check(json.dumps({"type": "patch", "patch": patch}), session)
    check(json.dumps({"type": "config", "config": patch}), session)


@pytest.mark.parametrize("text", [
    '{"type": "step", "epochs": ' + "1" * 5000 + "}",  # over Python's int-conversion limit (was a ValueError)
    "1" * 4301,
    '{"type": "patch", "patch": {"learning_rate": -Infinity}}',
    '{"type": "set_weight", "layer": 0, "kind": "w", "i": 0, "j": 0, "value": NaN}',
    '{"type": "patch", "patch": {"layers": ' + "[" * 990 + "]" * 990 + "}}",
    '{"type": "config", "config": {"seed": ' + "[" * 995 + "]" * 995 + "}}",
    '{"type": "patch", "patch": {"": 1}}',
    '{"type": "add_points", "points": [5, null, "x"]}',
    '{"type": "patch", "patch": {"weights": [{"w": [[1e308, 1e308]], "b": [NaN]}]}}',
])
def test_known_nasty_inputs(session, text):
    with pytest.raises((BadMessage, ConfigError)):
        parse_message(text, session, DEFAULT_LIMITS)
    check(text, session)


# --- a live session under a stream of bad messages ----------------------------------------

def bad_messages(n: int, session: Session, seed: int = 1) -> list[str]:
    """``n`` texts that parse_message rejects (checked against the default config)."""
    rng = random.Random(seed)
    makers = [
        lambda: "{" + "x" * rng.randint(0, 20),
        lambda: json.dumps([rng.random()] * rng.randint(0, 5)),
        lambda: json.dumps({"type": rng.choice(["dance", "", None, 3, "Play"])}),
        lambda: '{"type": "patch", "patch": {"learning_rate": %s}}' % rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1", "11", '"x"', "true"]),
        lambda: json.dumps({"type": "patch", "patch": {"layers": [{"units": rng.choice([0, 9, -1, 1.5, "4", True])}]}}),
        lambda: json.dumps({"type": "patch", "patch": {rng.choice(["warp", "lr", "Seed"]): 1}}),
        lambda: json.dumps({"type": "patch", "patch": {"optimizer": rng.choice(["adamw", "", 3])}}),
        lambda: json.dumps({"type": "step", "epochs": rng.choice([0, 1001, -5, 2.5, "3", None, [1]])}),
        lambda: json.dumps({"type": "set_weight", "layer": rng.randint(3, 9), "i": 0, "j": 0, "value": 1}),
        lambda: json.dumps({"type": "set_weight", "layer": 0, "i": 0, "j": 0, "value": rng.choice([101, -1e9, "1"])}),
        lambda: json.dumps({"type": "speed", "epochs_per_frame": rng.choice([0, 10**6, "fast", 1.5])}),
        lambda: json.dumps({"type": "add_points", "points": [{"x1": rng.uniform(7, 100), "x2": 0, "label": 1}]}),
        lambda: json.dumps({"type": "remove_point", "x1": "a", "x2": 0}),
        lambda: json.dumps({"type": "export", "format": "onnx"}),
        lambda: json.dumps({"type": "reset", "seed": -1}),
        lambda: '{"type": "step", "epochs": ' + "7" * 4400 + "}",
        lambda: "[" * 3000 + "]" * 3000,
        lambda: json.dumps({"type": "config", "config": {"dataset": "plane"}}),
    ]
    out = []
    while len(out) < n:
        text = rng.choice(makers)()
        try:
            parse_message(text, session, DEFAULT_LIMITS)
        except (BadMessage, ConfigError):
            out.append(text)
    return out


@pytest.fixture(scope="module")
def fuzz_client():
    # A high rate limit so every message reaches the validator (flooding: test_ws.py).
    s = Settings(warmup_sessions=[], max_sessions=4, rate_limit=100000, idle_pause_s=300)
    with TestClient(create_app(s)) as c:
        wait_ready(c)
        yield c


def test_bad_message_storm_leaves_sessions_training(fuzz_client, session):
    texts = bad_messages(300, session)
    with fuzz_client.websocket_connect("/ws") as ws, fuzz_client.websocket_connect("/ws") as bystander:
        recv(ws, "state")
        st0 = recv(bystander, "state")
        bystander.send_json({"type": "step", "epochs": 2})
        frame_where(bystander, lambda f: f["epoch"] == 2)
        ws.send_json({"type": "step", "epochs": 2})
        frame_where(ws, lambda f: f["epoch"] == 2)
        t0 = time.monotonic()
        for text in texts:
            ws.send_text(text)
        errors, other = 0, []
        for _ in range(5000):
            msg = recv(ws)
            if msg["type"] == "error":
                assert msg["message"]
                errors += 1
                if errors == len(texts):
                    break
            elif msg["type"] != "frame":
                other.append(msg["type"])
        assert errors == len(texts) and not other, (errors, other)
        assert time.monotonic() - t0 < 60
        ws.send_json({"type": "step", "epochs": 3})
        f = frame_where(ws, lambda f: f["epoch"] == 5)
        assert f["version"] == 1 and not f["diverged"] and f["metrics"]["train_loss"] is not None
        bystander.send_json({"type": "step", "epochs": 2})
        f = frame_where(bystander, lambda f: f["epoch"] == 4)
        assert f["version"] == st0["version"] and f["metrics"]["train_loss"] is not None
