"""The page against a real server, driven by headless Chromium (roles and accessible names)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def epoch(page) -> int:
    return int(page.locator("#epoch").inner_text().replace(",", ""))


def loss(page, which: str) -> float:
    return float(page.locator(f"#{which}-loss").inner_text())


def wait_until(page, js: str, timeout: float = 20000) -> None:
    """Poll a JS expression (page.wait_for_function would need 'unsafe-eval', which the CSP forbids)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js}")
        page.wait_for_timeout(100)


def hash_params(page) -> dict[str, str]:
    h = page.evaluate("location.hash").lstrip("#")
    return {k: v[0] for k, v in parse_qs(h).items()}


def test_load_play_trains(page_factory, artifacts):
    page = page_factory("dataset=gauss&learningRate=0.1&noise=0")
    for name in ("Play", "Step", "Reset", "Add layer", "Remove layer"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    for name in ("Learning rate", "Activation", "Regularization", "Regularization rate", "Problem type", "Optimizer",
                 "Preset"):
        expect(page.get_by_role("combobox", name=name, exact=True)).to_be_visible()
    for name in ("Batch size", "Noise", "Ratio of training data"):
        expect(page.get_by_role("slider", name=name)).to_be_visible()
    wait_until(page, "document.querySelector('#train-loss').textContent !== '–'", timeout=20000)
    first = loss(page, "train")
    page.get_by_role("button", name="Play", exact=True).click()
    expect(page.get_by_role("button", name="Pause", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("training")
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 150",
                           timeout=30000)
    wait_until(page, f"parseFloat(document.querySelector('#train-loss').textContent) < {first} * 0.7",
                           timeout=30000)
    page.screenshot(path=str(artifacts / "page-1280x800.png"))
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("paused")
    e = epoch(page)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_until(page, f"parseInt(document.querySelector('#epoch').textContent.replace(',', '')) >= {e + 1}")
    page.get_by_role("button", name="Reset", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) === 0")


def test_live_changes_while_playing(page_factory):
    page = page_factory("layers=4,2&activation=tanh")
    expect(page.locator("canvas.neuron")).to_have_count(6)
    page.get_by_role("button", name="Play", exact=True).click()
    page.get_by_role("combobox", name="Activation", exact=True).select_option("relu")
    page.get_by_role("button", name="Add layer").click()
    expect(page.locator("canvas.neuron")).to_have_count(8, timeout=10000)
    page.get_by_role("button", name="Add neuron to layer 3").click()
    expect(page.locator("canvas.neuron")).to_have_count(9, timeout=10000)
    page.get_by_role("button", name="Remove layer").click()
    page.get_by_role("button", name="Remove layer").click()
    expect(page.locator("canvas.neuron")).to_have_count(4, timeout=10000)
    e = epoch(page)
    wait_until(page, f"parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > {e + 20}",
                           timeout=20000)
    assert hash_params(page)["activation"] == "relu"
    assert hash_params(page)["layers"] == "4"
    # links: features (x1, x2) -> 4 units -> 1 output
    assert page.locator("#links .link-line").count() == 2 * 4 + 4 * 1
    page.get_by_role("button", name="Pause", exact=True).click()


def test_url_round_trip(page_factory):
    page = page_factory("dataset=spiral&layers=5,3,2&activation=sigmoid&learningRate=0.003&regularization=L1"
                        "&regularizationRate=0.01&optimizer=adam&batchSize=20&noise=0.25&trainRatio=0.7&showTest=true")
    expect(page.locator("canvas.neuron")).to_have_count(10)
    expect(page.get_by_role("combobox", name="Learning rate", exact=True)).to_have_value("0.003")
    expect(page.get_by_role("combobox", name="Activation", exact=True)).to_have_value("sigmoid")
    expect(page.get_by_role("combobox", name="Regularization", exact=True)).to_have_value("L1")
    expect(page.get_by_role("combobox", name="Regularization rate")).to_have_value("0.01")
    expect(page.get_by_role("combobox", name="Optimizer")).to_have_value("adam")
    expect(page.get_by_role("slider", name="Batch size")).to_have_value("20")
    expect(page.get_by_role("slider", name="Noise")).to_have_value("25")
    expect(page.get_by_role("slider", name="Ratio of training data")).to_have_value("70")
    expect(page.get_by_role("checkbox", name="Show test data")).to_be_checked()
    expect(page.get_by_role("button", name="Dataset Spiral")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("combobox", name="Learning rate", exact=True).select_option("0.1")
    page.get_by_role("combobox", name="Regularization", exact=True).select_option("L2")
    page.get_by_role("slider", name="Batch size").fill("5")
    page.get_by_role("slider", name="Batch size").dispatch_event("change")
    wait_until(page, "location.hash.includes('batchSize=5')")
    h = hash_params(page)
    assert h["learningRate"] == "0.1"
    assert h["regularization"] == "L2" and h["regularizationRate"] == "0.01"
    assert h["dataset"] == "spiral" and h["layers"] == "5,3,2" and h["activation"] == "sigmoid"
    assert h["optimizer"] == "adam" and h["showTest"] == "true"
    # the same URL in a fresh page restores the same controls
    again = page_factory(page.evaluate("location.hash").lstrip("#"))
    expect(again.get_by_role("combobox", name="Learning rate", exact=True)).to_have_value("0.1")
    expect(again.get_by_role("combobox", name="Regularization", exact=True)).to_have_value("L2")
    expect(again.get_by_role("slider", name="Batch size")).to_have_value("5")
    expect(again.locator("canvas.neuron")).to_have_count(10)


def test_hide_embed_present(page_factory, artifacts):
    page = page_factory("learningRate_hide=true&optimizer_hide=true")
    expect(page.get_by_role("combobox", name="Learning rate", exact=True)).to_be_hidden()
    expect(page.get_by_role("combobox", name="Optimizer")).to_be_hidden()
    expect(page.get_by_role("combobox", name="Activation", exact=True)).to_be_visible()

    embed = page_factory("embed=1&dataset=xor&layers=6,4", width=960, height=540)
    assert "embed" in embed.evaluate("document.body.className")
    expect(embed.locator(".brand")).to_be_hidden()
    epoch0 = epoch(embed)
    embed.locator("body").press("s")  # keyboard shortcuts are off when embedded
    embed.wait_for_timeout(400)
    assert epoch(embed) == epoch0
    # everything fits: no scrolling needed at 960x540
    size = embed.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert size[0] <= 960 and size[1] <= 540, size
    embed.screenshot(path=str(artifacts / "page-embed-960x540.png"))

    present = page_factory("present=1&dataset=circle", width=1920, height=1080)
    assert "present" in present.evaluate("document.body.className")
    present.locator("body").press("s")
    wait_until(present, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) >= 1")


def test_wide_screenshot(page_factory, artifacts):
    page = page_factory("dataset=spiral&layers=8,6,4&features=x1,x2,x1_sq,x2_sq,sin_x1,sin_x2&showTest=true"
                        "&learningRate=0.03", width=1920, height=1080)
    page.get_by_role("button", name="Play", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 300",
                           timeout=30000)
    page.get_by_role("button", name="Pause", exact=True).click()
    page.locator("#links .link-hit").nth(3).dispatch_event("mouseenter")
    expect(page.locator("#tooltip")).to_contain_text("Weight")
    page.screenshot(path=str(artifacts / "page-1920x1080.png"))


def test_click_adds_point(page_factory):
    page = page_factory("dataset=circle")
    states, seen = [], []

    def on_frame(payload):
        if isinstance(payload, str):
            msg = json.loads(payload)
            seen.append(msg)
            if msg.get("type") == "state":
                states.append(msg)

    def on_ws(ws):
        ws.on("framereceived", on_frame)

    page.on("websocket", on_ws)
    page.reload()
    page.get_by_role("status").filter(has_text="paused").wait_for()
    page.wait_for_timeout(300)
    shown = [s for s in states if "points" in s][-1]  # the points the page has (later states may omit them)
    before = len(shown["points"]["train"]) + len(shown["points"]["test"])
    canvas = page.get_by_role("img", name=re.compile("Decision boundary"))
    canvas.click(position={"x": 30, "y": 30})
    for _ in range(50):
        if states[-1]["config"]["dataset"] == "custom":
            break
        page.wait_for_timeout(100)
    after = states[-1]
    assert after["config"]["dataset"] == "custom", [m for m in seen if m.get("type") != "state"]
    assert after["config"]["dataset"] == "custom"
    assert len(after["points"]["train"]) + len(after["points"]["test"]) == before + 1
    # weight editing: click a link, type a value, Enter -> set_weight acknowledged
    x, y = page.evaluate("""(() => {
        const p = document.querySelector('#links .link-hit');
        const q = p.getPointAtLength(p.getTotalLength() / 2);
        const b = document.getElementById('board').getBoundingClientRect();
        return [q.x + b.left, q.y + b.top];
    })()""")
    page.mouse.move(x, y)
    expect(page.get_by_role("tooltip")).to_contain_text("Weight x1")
    page.mouse.click(x, y)
    editor = page.get_by_role("spinbutton", name="Weight value")
    expect(editor).to_be_focused()
    editor.fill("2.5")
    editor.press("Enter")
    wait_until(page, 
        "[...document.querySelectorAll('#links .link-hit')].some(e => e.dataset.weight === '2.5000')", timeout=10000)


def test_the_page_asks_for_deflated_frames_and_draws_them(browser, server_url):
    """Chromium has DecompressionStream("deflate-raw"): the page connects with
    ``?payload=deflate-raw``, the server's frames come with deflated payloads, and the page
    inflates them in order (its epoch counter follows the frames)."""
    import struct

    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        sockets, headers = [], []

        def on_socket(ws):
            sockets.append(ws.url)

            def on_frame(payload):
                if isinstance(payload, bytes):
                    (n,) = struct.unpack_from("<I", payload)
                    headers.append(json.loads(payload[4:4 + n]))
            ws.on("framereceived", on_frame)

        page.on("websocket", on_socket)
        page.goto(server_url)
        page.get_by_role("status").filter(has_text="paused").wait_for(timeout=30000)
        page.get_by_role("button", name="Play", exact=True).click()
        wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 20", timeout=30000)
        page.get_by_role("button", name="Pause", exact=True).click()
        assert sockets and all(url.endswith("/ws?payload=deflate-raw") for url in sockets)
        assert headers and all(h.get("payload") == "deflate-raw" for h in headers)
        shown = epoch(page)
        assert shown > 20 and shown <= max(h["epoch"] for h in headers)
    finally:
        ctx.close()
