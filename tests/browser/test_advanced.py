"""Advanced settings, metrics, CSV data, sharing and reconnecting, against a real server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_page import hash_params, wait_until

pytestmark = pytest.mark.browser


def last_config(page) -> dict:
    return page.evaluate("window.__nnplay_last_state?.config")


def wait_config(page, js_cond: str, timeout: float = 15000) -> None:
    try:
        wait_until(page, f"(() => {{ const c = window.__nnplay_last_state?.config; return !!c && ({js_cond}); }})()", timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; decay={(last_config(page) or {}).get('decay_epochs')} version={page.evaluate('window.__nnplay_last_state?.version')}; alert={page.locator('#error').inner_text()}") from None


def open_advanced(page):
    page.get_by_text("Advanced", exact=True).click()
    expect(page.get_by_role("group", name="Advanced settings")).to_be_visible()


def test_optimizer_and_schedule_while_playing(page_factory, artifacts):
    page = page_factory("dataset=circle")
    page.get_by_role("button", name="Play", exact=True).click()
    open_advanced(page)
    # SGD: no optimizer hyperparameters shown
    expect(page.get_by_role("spinbutton", name="Beta 1")).to_be_hidden()
    page.get_by_role("combobox", name="Optimizer").select_option("adam")
    wait_config(page, "c.optimizer === 'adam'")
    beta1 = page.get_by_role("spinbutton", name="Beta 1")
    expect(beta1).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Momentum")).to_be_hidden()
    beta1.fill("0.8")
    beta1.dispatch_event("change")
    wait_config(page, "c.optimizer === 'adam' && c.beta_1 === 0.8")
    h = hash_params(page)
    assert h["optimizer"] == "adam" and h["beta1"] == "0.8"
    # learning rate schedule
    page.get_by_role("combobox", name="Learning rate schedule").select_option("warmup_cosine")
    expect(page.get_by_role("spinbutton", name="Warmup epochs")).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Cosine alpha")).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Decay rate")).to_be_hidden()
    wait_config(page, "c.lr_schedule === 'warmup_cosine'")
    page.get_by_role("spinbutton", name="Decay epochs").fill("50")
    page.get_by_role("spinbutton", name="Decay epochs").dispatch_event("change")
    wait_config(page, "c.decay_epochs === 50")
    assert hash_params(page)["lrSchedule"] == "warmup_cosine"
    # checkbox settings
    page.get_by_role("checkbox", name="Batch norm").check()
    wait_config(page, "c.batch_norm === true")
    page.get_by_role("checkbox", name="Flip x1").check()
    wait_config(page, "c.augmentation.flip_x1 === true")
    page.screenshot(path=str(artifacts / "page-advanced-1280x800.png"))
    # an invalid value: the server's error is shown and the control reverts
    page.get_by_role("spinbutton", name="Dropout").fill("5")
    page.get_by_role("spinbutton", name="Dropout").dispatch_event("change")
    expect(page.get_by_role("alert")).to_contain_text("dropout")
    expect(page.get_by_role("spinbutton", name="Dropout")).to_have_value("0")
    # the same URL restores the advanced settings
    again = page_factory(page.evaluate("location.hash").lstrip("#"))
    wait_config(again, "c.optimizer === 'adam' && c.beta_1 === 0.8 && c.lr_schedule === 'warmup_cosine' && c.batch_norm")
    again.get_by_text("Advanced", exact=True).click()
    expect(again.get_by_role("spinbutton", name="Beta 1")).to_have_value("0.8")
    expect(again.get_by_role("checkbox", name="Flip x1")).to_be_checked()
    page.get_by_role("button", name="Pause", exact=True).click()


def test_per_layer_activation_and_full_batch(page_factory):
    page = page_factory("layers=4,2&activation=tanh")
    page.get_by_role("combobox", name="Activation of layer 2").select_option("relu")
    wait_config(page, "c.layers[0].activation === 'tanh' && c.layers[1].activation === 'relu'")
    assert hash_params(page)["activations"] == "tanh,relu"
    page.get_by_role("combobox", name="Activation", exact=True).select_option("sigmoid")
    wait_config(page, "c.layers.every(l => l.activation === 'sigmoid')")
    expect(page.get_by_role("combobox", name="Activation of layer 2")).to_have_value("sigmoid")
    slider = page.get_by_role("slider", name="Batch size")
    n_train = page.evaluate("window.__nnplay_points.train.length")
    assert slider.get_attribute("max") == str(n_train)
    slider.fill(str(n_train))
    slider.dispatch_event("change")
    wait_config(page, f"c.batch_size === {n_train}")
    expect(page.locator("#batchSize-out")).to_have_text("full batch")


def test_metrics_confusion_and_charts(page_factory):
    page = page_factory("dataset=gauss&learningRate=0.1")
    page.get_by_role("button", name="Step", exact=True).click()
    matrix = page.get_by_role("table", name="Confusion matrix")
    expect(matrix).to_be_visible()
    expect(matrix.locator("tbody tr")).to_have_count(2)
    wait_until(page, "[...document.querySelectorAll('.confusion td')].reduce((a, td) => a + +td.textContent, 0) > 0")
    expect(page.locator('[data-metric="f1"]')).not_to_have_text("–")
    for name in ("Accuracy over epochs", "Learning rate over epochs", "Loss over epochs"):
        expect(page.get_by_role("img", name=re.compile(name))).to_be_visible()
    # speed
    page.get_by_role("combobox", name="Speed").select_option("4")
    page.get_by_role("button", name="Play", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 20")
    page.get_by_role("button", name="Pause", exact=True).click()
    # hover read-out on the loss chart
    page.get_by_role("img", name=re.compile("Loss over epochs")).hover()
    expect(page.locator(".chart-tip:visible")).to_contain_text("epoch")
    # multi-class: a 3x3 matrix
    page.get_by_role("button", name="Dataset Blobs").click()
    page.get_by_role("combobox", name="Classes").select_option("3")
    page.get_by_role("button", name="Step", exact=True).click()
    expect(matrix.locator("tbody tr")).to_have_count(3, timeout=15000)


def test_csv_upload_and_bad_file(page_factory, tmp_path):
    page = page_factory("dataset=circle")
    good = tmp_path / "points.csv"
    rows = ["x1,x2,label,subset"] + [f"{i % 5 - 2},{i % 3 - 1},{i % 2},{'train' if i < 9 else 'test'}" for i in range(12)]
    good.write_text("\n".join(rows) + "\n")
    page.get_by_label("Upload data (CSV)").set_input_files(str(good))
    wait_config(page, "c.dataset === 'custom'")
    pts = page.evaluate("window.__nnplay_last_state.points")
    assert len(pts["train"]) + len(pts["test"]) == 12
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2,label\n1,2,0\n9,0,1\n")
    page.get_by_label("Upload data (CSV)").set_input_files(str(bad))
    expect(page.get_by_role("alert")).to_contain_text("[-6, 6]")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download data (CSV)").click()
    text = open(dl.value.path()).read()
    assert text.startswith("x1,x2,label,subset") and len(text.strip().splitlines()) == 13


def test_share_dialog_and_palette(page_factory):
    page = page_factory("dataset=blobs&classes=3")
    page.get_by_role("checkbox", name="Colour-blind-safe palette").check()
    wait_until(page, "location.hash.includes('cbPalette=true')")
    page.get_by_role("button", name="Share").click()
    dialog = page.get_by_role("dialog", name="Share")
    expect(dialog).to_be_visible()
    dialog.get_by_role("checkbox", name="Hide Learning rate").check()
    snippet = dialog.get_by_role("textbox", name="Embed snippet").input_value()
    assert snippet.startswith("<iframe src=") and 'width="960" height="540"' in snippet
    assert "embed=1" in snippet and "learningRate_hide=true" in snippet and "dataset=blobs" in snippet
    dialog.get_by_role("button", name="Copy").click()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_reconnects_after_idle_close(page_factory):
    page = page_factory("dataset=xor")
    page.evaluate("window.__nnplay_socket_close_for_test()")
    expect(page.get_by_role("status")).to_contain_text("reconnecting", timeout=5000)
    expect(page.get_by_role("status")).to_have_text("paused", timeout=15000)
    # the new session's first state has the server's defaults; the URL's config follows it
    wait_config(page, "c.dataset === 'xor'")


def test_screenshots(page_factory, artifacts):
    page = page_factory("dataset=spiral&layers=6,4&features=x1,x2,sin_x1,sin_x2&learningRate=0.03&showTest=true")
    page.get_by_role("button", name="Play", exact=True).click()
    wait_until(page, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 200", timeout=30000)
    page.get_by_role("button", name="Pause", exact=True).click()
    page.screenshot(path=str(artifacts / "page-1280x800.png"), full_page=True)
    wide = page_factory("dataset=blobs&classes=3&layers=8,6,4&showTest=true", width=1920, height=1080)
    wide.get_by_role("button", name="Play", exact=True).click()
    wait_until(wide, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 200", timeout=30000)
    wide.get_by_role("button", name="Pause", exact=True).click()
    wide.screenshot(path=str(artifacts / "page-1920x1080.png"))
    embed = page_factory("embed=1&dataset=circle&layers=4,2", width=960, height=540)
    embed.get_by_role("button", name="Play", exact=True).click()
    wait_until(embed, "parseInt(document.querySelector('#epoch').textContent.replace(',', '')) > 100", timeout=30000)
    size = embed.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert size[0] <= 960 and size[1] <= 540, size
    embed.screenshot(path=str(artifacts / "page-embed-960x540.png"))
    embed.get_by_text("Advanced", exact=True).click()
    embed.screenshot(path=str(artifacts / "page-embed-advanced-960x540.png"))
