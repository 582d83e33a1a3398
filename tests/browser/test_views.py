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


# --- overfitting, A/B, imbalance, hidden space ------------------------------------------------

COUNT_COLOUR = """([sel, rgb, tol, a0, a1]) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let p = 0; p < d.length; p += 4)
    if (Math.abs(d[p] - rgb[0]) <= tol && Math.abs(d[p + 1] - rgb[1]) <= tol && Math.abs(d[p + 2] - rgb[2]) <= tol && d[p + 3] >= a0 && d[p + 3] <= a1) n++;
  return n;
}"""


def pixels(page, selector: str, rgb: tuple[int, int, int], tol: int = 12, alpha: tuple[int, int] = (200, 255)) -> int:
    """How many pixels of a canvas are close to a colour (and an opacity range)."""
    return page.evaluate(COUNT_COLOUR, [selector, list(rgb), tol, *alpha])


def play_until(page, epoch: int) -> None:
    page.get_by_role("button", name="Play").click()
    wait_until(page, f"Number(document.getElementById('epoch').textContent.replace(',', '')) >= {epoch}", 60000)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_contain_text("paused")
    # a frame trained before the pause may still arrive after it: wait until the epoch shown
    # holds still, so that what a test reads next is one network's
    epoch, last = page.locator("#epoch"), None
    for _ in range(20):
        now = epoch.text_content()
        if now == last:
            break
        last = now
        page.wait_for_timeout(300)


OVERFIT = "view=overfit&dataset=spiral&noise=0.5&nPoints=120&trainRatio=0.3&layers=8,8,8&activation=relu&optimizer=adam&learningRate=0.01"


def test_overfit_gap_and_early_stopping_marker(page_factory):
    page = page_factory(OVERFIT + "&patience=15")
    expect(page.get_by_role("tab", name="Overfitting")).to_have_attribute("aria-selected", "true")
    page.get_by_role("button", name="Play").click()
    expect(page.get_by_role("status")).to_contain_text("early stopping", timeout=90000)
    panel = page.get_by_role("tabpanel")
    expect(panel).to_contain_text("stopped, best weights restored")
    best = int(page.evaluate("window.__nnplay_views.get('overfit').ctx.app.metrics.best_epoch"))
    expect(panel).to_contain_text(f"best test loss at epoch {best}")
    gap = page.get_by_role("list", name="Loss legend").get_by_role("listitem").filter(has_text="gap (test − train)")
    assert float(gap.locator(".note").inner_text()) > 0  # overfitting: test loss above training loss
    canvas = ".view-overfit > section:nth-of-type(2) canvas"
    assert pixels(page, canvas, (0, 158, 115), 20) > 20, "early-stopping marker (green) not drawn"
    assert pixels(page, canvas, (213, 94, 0), 30, (25, 55)) > 200, "train/test gap band not shaded"


def test_overfit_ab_draws_both_runs(page_factory, artifacts):
    page = page_factory(OVERFIT)
    page.get_by_role("combobox", name="A/B regularizer").select_option("l2")
    page.get_by_role("combobox", name="A/B strength").select_option("0.01")
    page.get_by_role("combobox", name="A/B epochs").select_option("100")
    page.get_by_role("button", name="Run A/B").click()
    note = page.get_by_text("same initial weights")
    expect(note).to_be_visible(timeout=120000)
    for k in ("A", "B"):
        side = page.get_by_role("figure", name=f"Run {k}")
        expect(side).to_be_visible()
        expect(side.get_by_role("term").filter(has_text="Gap (test − train)")).to_have_count(1)
    expect(page.get_by_role("figure", name="Run B")).to_contain_text("with l2 0.01")
    # both decision boundaries painted with the two classes' colours, and their loss charts
    for k in ("A", "B"):
        sel = f"canvas[aria-label='Decision boundary {k}']"
        spread = page.evaluate("""(sel) => { const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255, hi = 0; for (let p = 0; p < d.length; p += 4) { lo = Math.min(lo, d[p + 2]); hi = Math.max(hi, d[p + 2]); }
            return hi - lo; }""", sel)
        assert spread > 100, f"boundary {k} looks blank"
        assert pixels(page, f"canvas[aria-label^='Training and test loss {k}']", (0, 114, 178), 20) > 30
    # exactly one side is marked as the larger gap
    assert page.locator(".ab-stats dd.gap-large").count() + page.locator(".ab-stats dd.gap-small").count() == 2
    expect(page.get_by_role("list", name="A/B weights legend").get_by_role("listitem")).to_have_count(2)
    page.get_by_role("region", name="A/B regularizer comparison").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "view-overfit-ab.png"))


def test_ab_bad_strength_is_reported(page_factory):
    page = page_factory(OVERFIT)
    page_factory.allowed.append("status of 422")
    page.get_by_role("combobox", name="A/B regularizer").select_option("dropout")
    page.evaluate("""() => { const s = document.querySelector("select[aria-label='A/B strength']");
        s.append(new Option('5', '5')); s.value = '5'; }""")
    page.get_by_role("button", name="Run A/B").click()
    expect(page.get_by_role("alert")).to_contain_text("strength must be a finite number 0.05..0.9, got 5")


IMBALANCED = (
    "view=imbalance&dataset=gauss&noise=0.3&classRatio=0.1&layers=4&activation=relu&optimizer=adam&learningRate=0.01"
    # a fixed pace (epochs per frame): "auto" trains as fast as the server allows, and a net
    # trained to the end finds every point at any threshold, weighted or not
    "&speed=2"
)


def test_imbalance_threshold_moves_precision_and_recall(page_factory, artifacts):
    page = page_factory(IMBALANCED)
    play_until(page, 10)
    at = page.get_by_role("tabpanel").locator("dl[aria-label='At this threshold']")
    expect(at).to_contain_text("Precision")

    def read():
        vals = at.locator("dd").all_inner_texts()
        return float(vals[0]), float(vals[1])  # precision, recall

    p50, r50 = read()
    slider = page.get_by_role("slider", name="Decision threshold")
    slider.fill("0.05")
    expect(page.get_by_role("tabpanel")).to_contain_text("Decision threshold: 0.05")
    p05, r05 = read()
    assert r05 >= r50 and p05 < p50  # a low threshold: more positives, more false positives
    slider.fill("0.95")
    p95, r95 = read()
    assert r95 <= r50 and (p95, r95) != (p50, r50)
    page.screenshot(path=str(artifacts / "view-imbalance.png"))


def test_imbalance_class_weights_toggle(page_factory):
    page = page_factory(IMBALANCED)
    box = page.get_by_role("checkbox", name="Class weights")
    expect(box).not_to_be_checked()
    recall = page.get_by_role("tabpanel").locator("dd[data-metric=recall]")
    play_until(page, 20)
    off = float(recall.inner_text())
    box.check()
    wait_until(page, "location.hash.includes('classWeight=balanced')")
    wait_until(page, "window.__nnplay_last_state.config.class_weight === 'balanced'")
    expect(page.get_by_role("tabpanel")).to_contain_text("loss weights: class 0 ×")
    page.get_by_role("button", name="Reset").click()
    wait_until(page, "document.getElementById('epoch').textContent === '000,000'")
    play_until(page, 20)
    on = float(recall.inner_text())
    assert on > off  # the minority class is found more often with balanced weights
    box.uncheck()
    wait_until(page, "!location.hash.includes('classWeight')")
    wait_until(page, "window.__nnplay_last_state.config.class_weight === undefined")


def test_hidden_view_follows_a_step_taken_right_after_it_was_drawn(page_factory):
    """The view asks for new activations at most every 300 ms. A step right after a new
    choice (which asks at once) may send its one frame within that period: the view then
    asks once the period is over, frames or not, and shows the network after the step."""
    page = page_factory("view=hidden&dataset=circle&layers=6,2&activation=tanh")
    note = page.get_by_role("tabpanel").locator("p[aria-live]")
    expect(note).to_contain_text("Epoch 0: layer 2 (tanh), neurons 1 and 2")
    # a new choice asks at once; the step right after it falls within the period
    page.get_by_role("combobox", name="Neuron on the y axis").select_option("0")
    page.get_by_role("button", name="Step", exact=True).click()
    expect(page.locator("#epoch")).to_have_text("000,001")
    expect(note).to_contain_text("Epoch 1: layer 2 (tanh), neurons 1 and 1", timeout=5000)


def test_hidden_view_draws_the_warped_grid(page_factory, artifacts):
    page = page_factory("view=hidden&dataset=circle&layers=6,2&activation=tanh")
    expect(page.get_by_role("tab", name="Hidden space")).to_have_attribute("aria-selected", "true")
    layer = page.get_by_role("combobox", name="Hidden layer")
    expect(layer.locator("option")).to_have_count(2)
    expect(layer).to_have_value("1")  # the last hidden layer first
    note = page.get_by_role("tabpanel").locator("p[aria-live]")
    expect(note).to_contain_text("Epoch 0: layer 2 (tanh), neurons 1 and 2")
    canvas = "canvas.hidden-space"
    assert pixels(page, canvas, (77, 77, 77), 30) > 100 and pixels(page, canvas, (0, 158, 115), 40) > 100  # both line sets
    play_until(page, 30)
    # redrawn while training (the probe's program may still be loading on a busy machine)
    expect(note).not_to_contain_text("Epoch 0:", timeout=30000)
    layer.select_option("0")
    page.get_by_role("combobox", name="Neuron on the y axis").select_option("5")
    expect(note).to_contain_text("layer 1 (tanh), neurons 1 and 6")
    page.screenshot(path=str(artifacts / "view-hidden.png"))
