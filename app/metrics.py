"""Prometheus metrics (prometheus-client), one registry per app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.engine import compilations


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("nnplay_sessions_active", "Open websocket sessions", registry=r)
        self.frames_sent = Counter("nnplay_frames_sent", "Frames sent to clients", registry=r)
        self.frames_dropped = Counter("nnplay_frames_dropped", "Frames replaced before a slow client took them",
                                      registry=r)
        self.epochs = Counter("nnplay_training_epochs", "Epochs trained, all sessions", registry=r)
        self.errors = Counter("nnplay_client_errors", "Client messages answered with an error", ["kind"], registry=r)
        self.compilations = Gauge("nnplay_xla_compilations", "XLA compilations in this process", registry=r)
        self.compilations.set_function(compilations)
        buckets = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
        self.step_seconds = Histogram("nnplay_step_seconds", "Training time per scheduler tick", buckets=buckets,
                                      registry=r)
        self.frame_seconds = Histogram("nnplay_frame_seconds", "Time to compute one session's frame",
                                       buckets=buckets, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
