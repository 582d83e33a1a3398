"""The page's charts (vendored uPlot), speed and class weights in the URL, key forwarding when
embedded, and reconnecting to a restarted server, against real servers in headless Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import re
import struct
import threading

import pytest
from playwright.sync_api import expect

from app import process
from tests.browser.conftest import ConsoleLog
from tests.browser.test_page import epoch, hash_params, wait_until

pytestmark = pytest.mark.browser


def frame_header(payload: bytes) -> dict:
    """The JSON header of a binary frame (docs/protocol.md: u32 LE length, then the header)."""
    (n,) = struct.unpack_from("<I", payload)
    return json.loads(payload[4:4 + n])


def record_ws(page) -> tuple[list, list, list]:
    """Lists that fill with the page's sent messages, received JSON messages and frame headers."""
    sent, got, frames = [], [], []

    def on_ws(ws):
        ws.on("framesent", lambda p: sent.append(json.loads(p)) if isinstance(p, str) else None)
        ws.on("framereceived", lambda p: got.append(json.loads(p)) if isinstance(p, str) else frames.append(frame_header(p)))

    page.on("websocket", on_ws)
    return sent, got, frames


def test_charts_are_uplot_with_hover_values(page_factory, artifacts):
    # a fixed 2 epochs per frame: under "auto" a fast engine is hundreds of epochs in by the
    # pause, more than the chart has pixels, and the last pixel need not be the last epoch
    page = page_factory("dataset=gauss&learningRate=0.1&speed=2")
    assert page.locator('link[rel="stylesheet"][href="/static/vendor/uplot/uPlot.min.css"]').count() == 1
    page.get_by_role("button", name="Play", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 60", timeout=30000)
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("paused")
    page.wait_for_timeout(300)
    for name in ("Loss over epochs", "Accuracy over epochs", "Learning rate over epochs"):
        chart = page.get_by_role("img", name=re.compile(name))
        expect(chart.locator(".uplot canvas")).to_have_count(1)
        # uPlot's stylesheet is applied (its rule positions the overlay)
        assert chart.locator(".u-over").evaluate("e => getComputedStyle(e).position") == "absolute"
    # hover the right end of the loss chart: the read-out shows the last epoch and its losses,
    # which the page also shows from the frame's metrics
    loss = page.get_by_role("img", name=re.compile("Loss over epochs"))
    over = loss.locator(".u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] - 1, over["y"] + over["height"] / 2)
    tip = loss.locator(".chart-tip")
    expect(tip).to_be_visible()
    values = tip.locator(".u-value").all_inner_texts()
    assert int(values[0]) == epoch(page)
    assert values[1] == page.locator("#train-loss").inner_text()
    assert values[2] == page.locator("#test-loss").inner_text()
    # the accuracy read-out is a percentage in 0..100
    acc = page.get_by_role("img", name=re.compile("Accuracy over epochs"))
    box = acc.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pct = acc.locator(".chart-tip .u-value").nth(1).inner_text()
    assert pct.endswith("%") and 0 <= float(pct[:-1]) <= 100
    page.screenshot(path=str(artifacts / "page-chart-hover-1280x800.png"))
    page.mouse.move(5, 5)
    expect(tip).to_be_hidden()


def test_present_mode_charts_are_thick_and_large(page_factory, artifacts):
    page = page_factory("present=1&dataset=circle", width=1920, height=1080)
    page.get_by_role("button", name="Step", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) >= 1")
    # the root font grows (rem sizes follow), and the loss chart's axes use a large font
    assert page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)") >= 18
    normal = page_factory("dataset=circle", width=1920, height=1080)
    normal.get_by_role("button", name="Step", exact=True).click()
    wait_until(normal, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) >= 1")
    wait_until(normal, "!document.querySelector('#chart .u-axis').classList.contains('u-off')")
    wait_until(page, "!document.querySelector('#chart .u-axis').classList.contains('u-off')")
    x_axis = "#chart .u-axis >> nth=0"
    assert page.locator(x_axis).bounding_box()["height"] > normal.locator(x_axis).bounding_box()["height"]
    page.screenshot(path=str(artifacts / "page-present-1920x1080.png"))


def test_speed_round_trips_through_the_url(page_factory):
    page = page_factory("dataset=circle&speed=4")
    sent, got, frames = record_ws(page)
    page.reload()
    page.get_by_role("status").filter(has_text="paused").wait_for(timeout=30000)
    expect(page.get_by_role("combobox", name="Speed")).to_have_value("4")
    assert [m["epochs_per_frame"] for m in sent if m["type"] == "speed"] == [4]
    wait_until(page, "true")  # the ack may still be on its way
    page.wait_for_timeout(300)
    assert any(m["type"] == "ack" and m["of"] == "speed" for m in got), got
    # the server's own record: the next state (after a reset) carries the session's speed
    page.get_by_role("button", name="Reset", exact=True).click()
    wait_until(page, "window.__nnplay_last_state?.speed === 4")
    assert [m["speed"] for m in got if m["type"] == "state"][-1] == 4
    page.get_by_role("button", name="Play", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 40", timeout=30000)
    page.get_by_role("button", name="Pause", exact=True).click()
    # the server trains 4 epochs per frame: every frame while playing lands on a multiple of 4
    playing = [f["epoch"] for f in frames if f["playing"] and f["epoch"] > 0]
    assert len(playing) >= 5 and all(e % 4 == 0 for e in playing), playing
    # changing it goes into the URL, and a fresh page from that URL restores and sends it
    page.get_by_role("combobox", name="Speed").select_option("2")
    wait_until(page, "location.hash.includes('speed=2')")
    again = page_factory(page.evaluate("location.hash").lstrip("#"))
    expect(again.get_by_role("combobox", name="Speed")).to_have_value("2")
    again.get_by_role("combobox", name="Speed").select_option("auto")
    wait_until(again, "!location.hash.includes('speed=')")
    assert hash_params(again)["dataset"] == "circle"


def test_class_weights_per_class(page_factory):
    page = page_factory("dataset=blobs&classes=3")
    # the session must have the URL's 3 classes before a per-class list is built from them
    wait_until(page, "window.__nnplay_last_state?.config.classes === 3")
    page.get_by_text("Advanced", exact=True).click()
    weights = page.get_by_role("combobox", name="Class weights")
    expect(page.get_by_role("spinbutton", name="Class 0 weight")).to_be_hidden()
    weights.select_option("per_class")
    wait_until(page, "JSON.stringify(window.__nnplay_last_state?.config.class_weight) === '[1,1,1]'")
    for k in range(3):
        expect(page.get_by_role("spinbutton", name=f"Class {k} weight")).to_have_value("1")
    expect(page.get_by_role("spinbutton", name="Class 3 weight")).to_be_hidden()
    w1 = page.get_by_role("spinbutton", name="Class 1 weight")
    w1.fill("2.5")
    w1.dispatch_event("change")
    wait_until(page, "JSON.stringify(window.__nnplay_last_state?.config.class_weight) === '[1,2.5,1]'")
    assert hash_params(page)["classWeight"] == "1,2.5,1"
    # out of range: the server refuses, naming the field; the session keeps its weights
    w2 = page.get_by_role("spinbutton", name="Class 2 weight")
    w2.fill("300")
    w2.dispatch_event("change")
    expect(page.get_by_role("alert")).to_contain_text("class_weight[2] must be 0..100, got 300")
    expect(w2).to_have_value("1")
    assert page.evaluate("window.__nnplay_last_state.config.class_weight") == [1, 2.5, 1]
    # the URL restores them in a fresh page (and session)
    again = page_factory(page.evaluate("location.hash").lstrip("#"))
    wait_until(again, "JSON.stringify(window.__nnplay_last_state?.config.class_weight) === '[1,2.5,1]'")
    again.get_by_text("Advanced", exact=True).click()
    expect(again.get_by_role("spinbutton", name="Class 1 weight")).to_have_value("2.5")
    expect(again.get_by_role("combobox", name="Class weights")).to_have_value("per_class")
    # fewer classes: the per-class weights no longer fit and are dropped
    again.get_by_role("combobox", name="Classes").select_option("2")
    wait_until(again, "window.__nnplay_last_state?.config.classes === 2")
    assert again.evaluate("window.__nnplay_last_state.config.class_weight") is None


@pytest.fixture
def own_page(browser):
    """A fresh browser context (for pages a test loads itself); asserts no console errors."""
    log, contexts = ConsoleLog(), []

    def new(width=1280, height=800):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        log.attach(page)
        return page

    new.allowed = []
    yield new
    for ctx in contexts:
        ctx.close()
    errors = [e for e in log.errors if not any(a in e for a in new.allowed)]
    assert errors == [], errors


@pytest.fixture
def slides_url(server_url, tmp_path):
    """A slide deck on another origin (a second loopback server) that embeds the page and
    records the messages it receives."""
    (tmp_path / "deck.html").write_text(
        '<!doctype html><title>slides</title><link rel="icon" href="data:,"><p>parent</p>'
        f'<iframe id="nn" src="{server_url}/#embed=1&dataset=xor" width="960" height="540"></iframe>'
        '<script>window.msgs = []; addEventListener("message", (e) => msgs.push(e.data));</script>')
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/deck.html"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_embed_forwards_unused_keys_to_the_parent(own_page, server_url, slides_url):
    page = own_page(1100, 700)
    page.goto(slides_url)
    frame = page.frame_locator("#nn")
    frame.get_by_role("status").filter(has_text="paused").wait_for(timeout=30000)
    inner = next(f for f in page.frames if f.url.startswith(server_url))
    # the page has applied its URL's settings: the server's state for them rewrote the hash in
    # full (it may come after "paused" shows, slower while a new server loads its programs)
    wait_until(inner, "location.hash.includes('problem=') && location.hash.includes('dataset=xor')")
    hash0 = inner.evaluate("location.hash")
    frame.get_by_role("heading", name="Features").click()  # focus the embedded page, no control
    for key in ("ArrowRight", "ArrowLeft", "Space", "PageDown", "PageUp", "s"):
        page.keyboard.press(key)
    wait_until(page, "window.msgs.length >= 6")
    msgs = page.evaluate("window.msgs")
    assert [(m["type"], m["key"], m["code"]) for m in msgs] == [
        ("nnplay:key", "ArrowRight", "ArrowRight"), ("nnplay:key", "ArrowLeft", "ArrowLeft"),
        ("nnplay:key", " ", "Space"), ("nnplay:key", "PageDown", "PageDown"), ("nnplay:key", "PageUp", "PageUp"),
        ("nnplay:key", "s", "KeyS")]
    assert msgs[0]["shiftKey"] is False and msgs[0]["repeat"] is False
    # nothing changed in the playground: no step, no play, same settings
    inner.wait_for_timeout(300)
    assert int(inner.locator("#epoch").inner_text().replace(",", "")) == 0
    expect(frame.get_by_role("status")).to_have_text("paused")
    assert inner.evaluate("location.hash") == hash0
    # space on a focused button is forwarded, not a press of it
    frame.get_by_role("button", name="Play", exact=True).focus()
    page.keyboard.press("Space")
    wait_until(page, "window.msgs.length >= 7")
    inner.wait_for_timeout(300)
    expect(frame.get_by_role("status")).to_have_text("paused")
    # keys a control uses stay there: arrows on a slider move the slider, nothing is forwarded
    frame.get_by_role("slider", name="Noise").focus()
    page.keyboard.press("ArrowRight")
    inner.wait_for_timeout(300)
    assert page.evaluate("window.msgs.length") == 7
    expect(frame.get_by_role("slider", name="Noise")).to_have_value("5")


def test_reconnects_after_server_restart(own_page, artifacts):
    port = process.free_port()
    url = f"http://127.0.0.1:{port}"
    settings = "dataset=spiral&layers=5,3&activation=relu&learningRate=0.1&noise=0.1&speed=2"
    log = open(artifacts / "restart-server.log", "wb")
    proc = process.start(port, log=log)
    try:
        process.wait_ready(port, proc, timeout=300)
        page = own_page()
        # the dropped connection and the refused reconnects while the server is down
        own_page.allowed = ["WebSocket connection to", "ERR_CONNECTION_REFUSED", "status of 503"]
        page.goto(f"{url}/#{settings}")
        status = page.get_by_role("status")
        status.filter(has_text="paused").wait_for(timeout=30000)
        wait_until(page, "window.__nnplay_last_state?.config.dataset === 'spiral'")
        page.get_by_role("button", name="Play", exact=True).click()
        expect(status).to_have_text("training")
        wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 20", timeout=30000)
        process.stop(proc)
        expect(status).to_contain_text("reconnecting", timeout=15000)
        proc = process.start(port, log=log)
        process.wait_ready(port, proc, timeout=300)
        # reconnects on its own, resumes training, and the new session has the URL's settings
        expect(status).to_have_text("training", timeout=30000)
        wait_until(page, "window.__nnplay_last_state?.config.layers.length === 2 "
                         "&& window.__nnplay_last_state.config.dataset === 'spiral'", timeout=15000)
        cfg = page.evaluate("window.__nnplay_last_state.config")
        assert cfg["dataset"] == "spiral" and cfg["noise"] == 0.1 and cfg["learning_rate"] == 0.1
        assert [(l["units"], l["activation"]) for l in cfg["layers"]] == [(5, "relu"), (3, "relu")]
        h = hash_params(page)
        assert h["dataset"] == "spiral" and h["layers"] == "5,3" and h["activation"] == "relu"
        assert h["learningRate"] == "0.1" and h["speed"] == "2"
        expect(page.get_by_role("combobox", name="Learning rate", exact=True)).to_have_value("0.1")
        expect(page.get_by_role("combobox", name="Speed")).to_have_value("2")
        expect(page.locator("canvas.neuron")).to_have_count(8)
        wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 10", timeout=30000)
        page.screenshot(path=str(artifacts / "page-after-restart-1280x800.png"))
    finally:
        process.stop(proc)
        log.close()


@pytest.mark.parametrize("hash_, size", [("dataset=spiral&layers=4,2&showTest=true", (1280, 800)),
                                         ("dataset=blobs&classes=3&layers=6,4,4", (1280, 800)),
                                         ("embed=1&dataset=xor&layers=6,4", (960, 540))])
def test_essentials_fit_without_scrolling(page_factory, artifacts, hash_, size):
    page = page_factory(hash_, width=size[0], height=size[1])
    page.get_by_role("button", name="Step", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) >= 1")
    scroll = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert scroll[0] <= size[0] and scroll[1] <= size[1], scroll
    essentials = [page.get_by_role("button", name="Play", exact=True), page.get_by_role("combobox", name="Learning rate", exact=True),
                  page.locator("canvas.neuron").last, page.get_by_role("img", name=re.compile("Decision boundary")),
                  page.get_by_role("img", name=re.compile("Loss over epochs")), page.locator('[data-metric="test_accuracy"]'),
                  page.get_by_role("img", name=re.compile("Accuracy over epochs")), page.get_by_role("status")]
    for el in essentials:
        expect(el).to_be_in_viewport(ratio=1)
    page.screenshot(path=str(artifacts / f"page-fit-{size[0]}x{size[1]}-{len(hash_)}.png"))
