"""Dependency audit that works where only the PyPI project API is reachable.

pip-audit asks PyPI's per-release endpoint (``/pypi/NAME/VERSION/json``) or OSV; behind a
registry proxy that serves only ``/pypi/NAME/json`` every package comes back "not found"
and nothing is audited. This script reads the project endpoint instead: it lists each
installed distribution, the latest release and the vulnerabilities PyPI reports for that
latest release (which apply to the installed one when the versions are equal). An older
installed version is reported as such: audit it where OSV is reachable (`pip-audit`).

    .venv/bin/python bench/audit.py
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import urllib.request


def main() -> int:
    seen, findings, behind, unknown = set(), [], [], []
    for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
        name, version = dist.metadata["Name"], dist.version
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as r:
                info = json.load(r)
        except Exception as err:  # a local package (nnplay) or no network
            unknown.append(f"{name} {version}: {type(err).__name__}")
            continue
        latest = info["info"]["version"]
        vulns = [v.get("id", "?") for v in info.get("vulnerabilities", [])]
        if latest != version:
            behind.append(f"{name} {version} (latest {latest})")
        elif vulns:
            findings.append(f"{name} {version}: {', '.join(vulns)}")
    print(f"audited {len(seen) - len(unknown)} distributions against PyPI")
    print("vulnerable (installed == latest, PyPI lists advisories):", findings or "none")
    print("older than latest (advisories for them not checked here):", behind or "none")
    print("not on PyPI / unreachable:", unknown or "none")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
