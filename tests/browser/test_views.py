"""Teaching views against a real server (roles and accessible names; no console errors)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_page import hash_params, wait_until

pytestmark = pytest.mark.browser


def test_backprop_view_steps_and_recomputes(page_factory, artifacts):
    page = page_factory("view=backprop")
    expect(page.get_by_role("tab", name="Backprop")).to_have_attribute("aria-selected", "true")
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("0.0227")
    expect(panel).to_contain_text("0.168")
    current = page.locator("#bp-current")
    expect(current).to_have_attribute("aria-live", "polite")
    first = current.inner_text()
    assert first.startswith("z1_1")
    page.get_by_role("button", name="Next step").click()
    expect(current).not_to_have_text(first)
    assert current.inner_text().startswith("z1_2")
    # not embedded: the arrow keys step too
    page.get_by_role("button", name="Next step").focus()
    page.keyboard.press("ArrowRight")
    expect(current).to_contain_text("a1_1")
    page.keyboard.press("ArrowLeft")
    expect(current).to_contain_text("z1_2")
    page.get_by_role("button", name="Previous step").click()
    expect(current).to_have_text(first)
    # highlighted step in the list
    expect(page.get_by_role("list", name="Steps").locator("[aria-current=step]")).to_contain_text("z1_1")
    # editing the learning rate re-computes the update
    lr = page.get_by_role("spinbutton", name="Backprop learning rate")
    lr.fill("1")
    lr.press("Enter")
    lr.blur()
    expect(panel).to_contain_text("0.331083")
    # a bad combination: the server's message in the alert (Chromium logs the 422 response)
    page_factory.allowed.append("status of 422")
    page.get_by_role("combobox", name="Loss").select_option("categorical_crossentropy")
    expect(page.get_by_role("alert")).to_contain_text("categorical_crossentropy needs output_activation softmax")
    page.get_by_role("combobox", name="Loss").select_option("mse")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(panel).to_contain_text("mse")
    page.screenshot(path=str(artifacts / "view-backprop-test.png"))


def test_backprop_embed_leaves_arrows_to_the_slides(page_factory):
    page = page_factory("view=backprop&embed=1")
    current = page.locator("#bp-current")
    expect(current).to_contain_text("z1_1")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    expect(current).to_contain_text("z1_1")
    nxt = page.get_by_role("button", name="Next step")
    assert "slide" in (nxt.get_attribute("title") or "")
    nxt.click()
    expect(current).to_contain_text("z1_2")


def test_tabs_write_the_hash(page_factory):
    page = page_factory("")
    expect(page.get_by_role("tab", name="Playground")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Gradients").click()
    wait_until(page, "location.hash.includes('view=gradients')")
    expect(page.get_by_role("list", name="Gradients legend").get_by_role("listitem")).to_have_count(3)
    page.get_by_role("tab", name="Playground").click()
    wait_until(page, "!location.hash.includes('view=')")
    assert "view" not in hash_params(page)


def test_lr_sweep_and_range_test(page_factory, artifacts):
    page = page_factory("view=lr&dataset=gauss&nPoints=100&layers=2")
    page.evaluate("window.__nnplay_views.get('lr').sweepEpochs = 50")
    page.get_by_role("button", name="Run sweep").click()
    entries = page.get_by_role("list", name="Sweep legend").get_by_role("listitem")
    expect(entries.first).to_be_visible(timeout=60000)
    assert entries.count() >= 5
    text = " ".join(entries.all_inner_texts())
    assert "right" in text
    page.get_by_role("button", name="Range test").click()
    expect(page.get_by_text("Suggested learning rate")).to_be_visible(timeout=60000)
    use = page.get_by_role("button", name="Use suggested learning rate")
    expect(use).to_be_enabled()
    before = hash_params(page).get("learningRate")
    use.click()
    wait_until(page, f"new URLSearchParams(location.hash.slice(1)).get('learningRate') !== {before!r}")
    page.screenshot(path=str(artifacts / "view-lr-test.png"))


def test_optimizers_view(page_factory, artifacts):
    page = page_factory("view=optimizers")
    entries = page.get_by_role("list", name="Optimizers legend").get_by_role("listitem")
    expect(entries).to_have_count(4, timeout=60000)
    for name in ("SGD", "Momentum", "RMSProp", "Adam"):
        expect(entries.filter(has_text=name)).to_have_count(1)
    expect(page.get_by_role("slider", name="Surface learning rate")).to_be_visible()
    expect(page.get_by_role("slider", name="Surface momentum")).to_be_visible()
    page.get_by_role("combobox", name="Surface").select_option("rosenbrock")
    expect(page.get_by_text("f(x, y) =")).to_contain_text("100", timeout=30000)
    page.screenshot(path=str(artifacts / "view-optimizers-test.png"))


def test_preset_opens_its_view(page_factory):
    page = page_factory("")
    page.get_by_role("combobox", name="Preset").select_option("backprop")
    expect(page.get_by_role("tab", name="Backprop")).to_have_attribute("aria-selected", "true")
    wait_until(page, "location.hash.includes('view=backprop')")


def test_export_keras_downloads_code(page_factory):
    page = page_factory("")
    page.get_by_text("Export", exact=True).click()
    with page.expect_download(timeout=30000) as info:
        page.get_by_role("button", name="Keras code").click()
    download = info.value
    assert download.suggested_filename.endswith(".py")
    assert "Sequential" in open(download.path()).read()
