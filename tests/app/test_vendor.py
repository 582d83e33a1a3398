"""Vendored page libraries are the unmodified upstream files their README names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "static" / "vendor"


def test_uplot_matches_its_readme():
    d = VENDOR / "uplot"
    readme = (d / "README.md").read_text()
    version = (d / "VERSION").read_text().strip()
    assert f"Version: {version}" in readme and "MIT" in (d / "LICENSE").read_text()
    assert f"uPlot (v{version})" in (d / "uPlot.esm.js").read_text()[:400]
    sums = dict(re.findall(r"`([\w.]+)` — sha256 `([0-9a-f]{64})`", readme))
    assert set(sums) == {"uPlot.esm.js", "uPlot.min.css"}
    for name, digest in sums.items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name
