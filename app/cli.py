"""The ``nnplay`` command: ``serve``, ``train``, ``bench``."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _train(args: argparse.Namespace) -> int:
    from core.config import ConfigError, parse_config

    try:
        text = sys.stdin.read() if args.config == "-" else open(args.config, encoding="utf-8").read()
    except OSError as err:
        print(f"nnplay train: cannot read {args.config}: {err.strerror}", file=sys.stderr)
        return 2
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        print(f"nnplay train: config is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
              file=sys.stderr)
        return 2
    try:
        cfg = parse_config(raw)
    except ConfigError as err:
        for msg in err.messages:
            print(f"nnplay train: {msg}", file=sys.stderr)
        return 2
    if args.epochs < 0:
        print(f"nnplay train: --epochs must be >= 0, got {args.epochs}", file=sys.stderr)
        return 2

    from core.engine import Engine, Run, enable_compilation_cache

    enable_compilation_cache()
    engine = Engine()
    run = Run(engine, cfg)
    run.train(1, every=1)  # compile outside the timed part (cached across runs)
    run.reset()
    t0 = time.perf_counter()
    # Measure once at the end, unless early stopping needs the test loss every epoch.
    run.train(args.epochs, every=1 if cfg.early_stopping_patience else max(args.epochs, 1))
    wall = time.perf_counter() - t0
    metrics = run.metrics()
    out = {
        **metrics,
        "epochs": run.epoch,
        "wall_seconds": round(wall, 6),
        "epochs_per_second": round(run.epoch / wall, 3) if wall > 0 else None,
        "n_params": cfg.n_params,
        "weights": run.weights(),
    }
    json.dump(out, sys.stdout, allow_nan=False, default=_no_nan)
    sys.stdout.write("\n")
    return 0


def _no_nan(v):
    raise TypeError(f"not serialisable: {v!r}")


def _serve(args: argparse.Namespace) -> int:
    from app.server import serve

    return serve(host=args.host, port=args.port, workers=args.workers)


def _bench(args: argparse.Namespace) -> int:
    from core.bench import main as bench_main

    try:
        return bench_main(seconds=args.seconds, sessions=args.sessions, with_reference=args.reference)
    except RuntimeError as err:
        print(f"nnplay bench: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnplay", description="A live neural-network playground.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the playground (FastAPI + websocket)")
    s.add_argument("--host", default=None, help="bind address (NNPLAY_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (NNPLAY_PORT, default 8000)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (NNPLAY_WORKERS, default 1)")
    s.set_defaults(fn=_serve)
    t = sub.add_parser("train", help="train a config headless and print the result as JSON")
    t.add_argument("config", help="a JSON config file, or - for stdin")
    t.add_argument("--epochs", type=int, default=100)
    t.set_defaults(fn=_train)
    b = sub.add_parser("bench", help="engine benchmark: epochs/s and ms per frame")
    b.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    b.add_argument("--sessions", type=int, default=128, help="sessions in the batched measurement")
    b.add_argument("--reference", action="store_true",
                   help="first time TF Playground's training loop (Node, bench/tfp_reference.mjs) on this machine "
                        "and print nnplay's figures as multiples of it")
    b.set_defaults(fn=_bench)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
