from __future__ import annotations

from core.config import parse_config


def test_healthz_ready(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["ready"] is True


def test_schema_names_fields_and_bounds(client):
    s = client.get("/api/schema").json()
    props = s["properties"]
    for field in ("learning_rate", "layers", "optimizer", "batch_size", "l1", "l2", "dropout", "features"):
        assert field in props
    assert props["learning_rate"]["maximum"] == 10.0
    assert set(props["optimizer"]["enum"]) == {"sgd", "momentum", "rmsprop", "adam"}


def test_presets_validate(client):
    presets = client.get("/api/presets").json()
    assert len(presets) >= 16
    for p in presets:
        parse_config(p["config"])
        assert p["view"] and p["title"]


def test_index_and_security_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "<html" in r.text
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors *" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_static_cannot_escape(client):
    for path in ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/..%2fapp/main.py"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "jax" not in r.text


def test_metrics_exposition(client):
    text = client.get("/metrics").text
    for name in ("nnplay_sessions_active", "nnplay_frames_sent_total", "nnplay_xla_compilations",
                 "nnplay_step_seconds_bucket", "nnplay_frame_seconds_bucket", "nnplay_training_epochs_total"):
        assert name in text
