"""Every preset validates, trains, and names a view the page has."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from app.presets import PRESETS, validated
from core.config import parse_config
from core.engine import Run

INDEX_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "views" / "index.js"
NOT_LEARNING = {"lr-too-high"}  # shows divergence / oscillation on purpose
EPOCHS = 40


def page_views() -> set[str]:
    """View names the page knows: VIEWS' names and ALIASES' keys in static/js/views/index.js."""
    src = INDEX_JS.read_text()
    names = set(re.findall(r"\{ name: '([a-z_]+)'", src))
    aliases = re.search(r"const ALIASES = \{([^}]*)\}", src).group(1)
    return names | set(re.findall(r"([a-z_]+): '", aliases))


def test_every_preset_names_a_view_of_the_page():
    views = page_views()
    assert {"playground", "backprop", "lr", "overfit", "imbalance", "hidden"} <= views
    for p in validated():
        assert p["view"] in views, p["name"]


@pytest.mark.parametrize("preset", PRESETS, ids=[p["name"] for p in PRESETS])
def test_preset_trains(engine, preset):
    run = Run(engine, parse_config(preset["config"]))
    start = run.metrics()["train_loss"]
    rows = run.train(EPOCHS)
    loss = rows[-1][engine.metric_names.index("train_loss")]
    if preset["name"] in NOT_LEARNING:
        assert run.state.diverged or not math.isfinite(loss) or loss > 0.5 * start
        return
    assert len(rows) == EPOCHS and np.isfinite(rows[:, engine.metric_names.index("train_loss")]).all()
    assert loss < start, (preset["name"], start, loss)
