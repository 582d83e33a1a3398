"""nnplay's JAX engine.

Importing ``core`` sets one XLA option before JAX starts its backend: XLA's CPU runtime
compiles a while loop as one function (instead of dispatching each of its operations as a
separate "thunk") when the loop touches fewer bytes than
``xla_cpu_small_while_loop_byte_threshold`` (default 1,024) and holds no sort, scatter or
custom call. A training epoch's minibatch loop touches more than that, so each of its
200-odd small operations per update was dispatched on its own. With the threshold raised,
the whole minibatch loop becomes one compiled function: net (a) of ``nnplay bench`` trains
~1.6x faster, and conditionals inside the loop become plain branches (docs/benchmarks.md,
"Sixth session"). The option is part of JAX's compilation-cache key, so cached programs
compiled without it are not reused by mistake.
"""

import os

SMALL_LOOP_OPTION = "xla_cpu_small_while_loop_byte_threshold"
SMALL_LOOP_BYTES = 1 << 30


def _with_small_loops(flags: str) -> str:
    """``flags`` (an XLA_FLAGS value) with the small-loop threshold added to
    ``--xla_backend_extra_options``, unless it is set there already."""
    if SMALL_LOOP_OPTION in flags:
        return flags
    option = f"{SMALL_LOOP_OPTION}={SMALL_LOOP_BYTES}"
    parts = flags.split()
    for i, part in enumerate(parts):
        if part.startswith("--xla_backend_extra_options="):
            parts[i] = f"{part},{option}"
            return " ".join(parts)
    return " ".join(parts + [f"--xla_backend_extra_options={option}"])


os.environ["XLA_FLAGS"] = _with_small_loops(os.environ.get("XLA_FLAGS", ""))
