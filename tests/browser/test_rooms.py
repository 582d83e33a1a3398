"""Classroom rooms in the browser: a lecturer page and three student pages (separate browser
contexts) against a real server — create a room, join by the student link, push a preset and a
link, lock a control (and have a forced change refused by the server), run a challenge to a
revealed leaderboard, spotlight a student, hide names, close the room."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ConsoleLog
from tests.browser.test_page import hash_params, wait_until

pytestmark = pytest.mark.browser

ROOM_CODE = re.compile(r"^[A-Z2-9]{6}$")


@pytest.fixture
def lecturer_factory(browser, server_url):
    """Open /classroom in fresh contexts; afterwards assert that none logged an error."""
    contexts, log = [], ConsoleLog()

    def open_page(width: int = 1280, height: int = 800, hash_: str = ""):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        log.attach(page)
        page.goto(f"{server_url}/classroom{('#' + hash_) if hash_ else ''}")
        return page

    open_page.allowed = []
    yield open_page
    for ctx in contexts:
        ctx.close()
    errors = [e for e in log.errors if not any(a in e for a in open_page.allowed)]
    assert errors == [], errors


def new_room(lecturer, title: str = "Lecture 3") -> str:
    lecturer.get_by_role("textbox", name="Title (optional)").fill(title)
    lecturer.get_by_role("button", name="New classroom").click()
    code_el = lecturer.locator("#cr-room-code")
    expect(code_el).to_have_text(ROOM_CODE, timeout=15000)
    expect(lecturer.get_by_role("status")).to_have_text("dashboard connected", timeout=15000)
    return code_el.inner_text()


def join(page_factory, code: str, name: str | None = None):
    page = page_factory(f"room={code}")
    banner = page.get_by_role("region", name=re.compile(f"^Classroom {code}"))
    expect(banner).to_be_visible()
    expect(banner.get_by_role("status")).to_have_text(re.compile("^joined"), timeout=15000)
    if name is not None:
        field = page.get_by_role("textbox", name="Your name (optional)")
        field.fill(name)
        field.dispatch_event("change")
    return page


def last_config(page) -> dict:
    return page.evaluate("window.__nnplay_last_state?.config")


def test_classroom_end_to_end(lecturer_factory, page_factory, artifacts):
    lecturer = lecturer_factory()
    code = new_room(lecturer)
    # the token is shown once (and kept in this browser), the student link and QR code point at the room
    token = lecturer.get_by_role("textbox", name="Lecturer token").input_value()
    assert len(token) >= 22
    assert lecturer.evaluate(f"localStorage.getItem('nnplay-lecturer-token:{code}')") == token
    link = lecturer.get_by_role("textbox", name="Student link").input_value()
    assert link.endswith(f"/#room={code}")
    qr = lecturer.get_by_role("img", name="QR code of the student link").first
    wait_until(lecturer, "document.querySelector('#cr-qr').complete && document.querySelector('#cr-qr').naturalWidth > 0")
    assert qr.get_attribute("src") == f"/api/rooms/{code}/qr.svg"
    lecturer.get_by_role("button", name="Done, hide it").click()
    expect(lecturer.get_by_role("textbox", name="Lecturer token")).to_be_hidden()

    # three students join through the student link; names are text, never markup
    students = [join(page_factory, code, "Ada"), join(page_factory, code, "<b>Bob</b>"), join(page_factory, code)]
    wall = lecturer.get_by_role("list", name="Students' decision boundaries")
    expect(wall.get_by_role("button", name=re.compile("^Spotlight"))).to_have_count(3, timeout=15000)
    expect(wall.get_by_role("button", name="Spotlight Ada")).to_be_visible(timeout=10000)
    expect(wall.get_by_role("button", name="Spotlight <b>Bob</b>")).to_be_visible(timeout=10000)
    assert wall.locator("b").count() == 0
    expect(lecturer.locator("#cr-count")).to_have_text("3")

    # push a preset: every student's URL and network change (MLP on XOR: one layer of 4 tanh units)
    for s in students:
        assert hash_params(s).get("dataset") != "xor"
        expect(s.locator("canvas.neuron")).not_to_have_count(4)
    lecturer.get_by_role("combobox", name="Preset to push").select_option("mlp-xor")
    lecturer.get_by_role("button", name="Push preset").click()
    for s in students:
        wait_until(s, "new URLSearchParams(location.hash.slice(1)).get('dataset') === 'xor'")
        h = hash_params(s)
        assert (h["dataset"], h["layers"], h["learningRate"], h["room"]) == ("xor", "4", "0.1", code)
        expect(s.locator("canvas.neuron")).to_have_count(4)
        wait_until(s, "window.__nnplay_last_state?.config.dataset === 'xor'")
        assert "room" not in last_config(s)

    # lock the learning rate: disabled on every student page, and a forced change is refused
    locks = lecturer.get_by_role("group", name="Lock controls")
    locks.get_by_role("checkbox", name="Learning rate").check()
    locks.get_by_role("checkbox", name="Noise").check()
    for s in students:
        lr = s.get_by_role("combobox", name="Learning rate")
        expect(lr).to_be_disabled()
        expect(s.get_by_role("slider", name="Noise")).to_be_disabled()
        assert s.locator('[data-ctl="learningRate"]').get_attribute("title") == "locked by the lecturer"
        expect(s.get_by_role("combobox", name="Activation", exact=True)).to_be_enabled()
    students[1].screenshot(path=str(artifacts / "classroom-student-locked-1280x800.png"))
    forced = students[0]
    forced.evaluate("document.querySelector('#learningRate').disabled = false")
    forced.get_by_role("combobox", name="Learning rate").select_option("0.003")
    expect(forced.get_by_role("alert")).to_have_text("learning_rate is locked by the lecturer")
    wait_until(forced, "new URLSearchParams(location.hash.slice(1)).get('learningRate') === '0.1'")
    assert last_config(forced)["learning_rate"] == 0.1
    expect(forced.get_by_role("combobox", name="Learning rate")).to_have_value("0.1")
    # another control still works
    students[1].get_by_role("combobox", name="Activation", exact=True).select_option("relu")
    wait_until(students[1], "window.__nnplay_last_state?.config.layers[0].activation === 'relu'")
    locks.get_by_role("checkbox", name="Learning rate").uncheck()
    locks.get_by_role("checkbox", name="Noise").uncheck()
    for s in students:
        expect(s.get_by_role("combobox", name="Learning rate")).to_be_enabled()
        expect(s.get_by_role("slider", name="Noise")).to_be_enabled()

    # push a playground link: an easy circle for the challenge
    lecturer.get_by_role("textbox", name="Playground link to push").fill(
        "http://example.org/#dataset=circle&layers=4&activation=tanh&learningRate=0.1&optimizer=adam&noise=0")
    lecturer.get_by_role("button", name="Push link").click()
    for s in students:
        wait_until(s, "window.__nnplay_last_state?.config.dataset === 'circle' && window.__nnplay_last_state.config.optimizer === 'adam'")

    # a challenge with an easy target, ranked by time
    lecturer.get_by_role("combobox", name="Challenge template").select_option(label="Custom")
    lecturer.get_by_role("textbox", name="Title", exact=True).fill("Circle: 80 % test accuracy")
    lecturer.get_by_role("combobox", name="Metric").select_option("test_accuracy")
    lecturer.get_by_role("spinbutton", name="Target").fill("0.8")
    lecturer.get_by_role("combobox", name="Rank by").select_option("time")
    lecturer.get_by_role("combobox", name="Dataset").select_option("circle")
    lecturer.get_by_role("button", name="Start challenge").click()
    for s in students:
        banner = s.get_by_role("region", name=re.compile(f"^Classroom {code}"))
        expect(banner).to_contain_text("Circle: 80 % test accuracy")
        expect(banner).to_contain_text("test accuracy ≥ 80.0 % · fastest wins")
        s.get_by_role("button", name="Play", exact=True).click()
    board = lecturer.locator("#cr-board")
    expect(board.locator("tbody tr")).to_have_count(3, timeout=90000)
    # nobody sees the leaderboard before it is revealed
    banners = [s.get_by_role("region", name=re.compile(f"^Classroom {code}")) for s in students]
    for s, banner in zip(students, banners):
        expect(banner.get_by_role("table")).to_have_count(0)
        expect(s.locator(".room-own")).to_contain_text("Target reached after", timeout=15000)
    lecturer.get_by_role("button", name="Reveal leaderboard").click()
    expect(lecturer.get_by_role("button", name="Reveal leaderboard")).to_have_attribute("aria-pressed", "true")
    for banner in banners:
        table = banner.get_by_role("table", name="Leaderboard")
        expect(table.locator("tbody tr")).to_have_count(3)
        expect(table).to_contain_text("Ada")
        expect(table).to_contain_text("<b>Bob</b>")
        assert table.locator("b").count() == 0
        expect(table.locator("tr.you")).to_have_count(1)
        expect(banner.locator(".room-own")).to_contain_text(" · rank ")
    for s in students:
        s.get_by_role("button", name="Pause", exact=True).click()
    lecturer.get_by_role("button", name="Stop challenge").click()
    expect(lecturer.locator("#cr-ch-status")).to_contain_text("Stopped")

    # every tile shows that student's boundary: trained on the circle, blue inside, orange outside
    wait_until(lecturer, "document.querySelectorAll('#cr-wall canvas').length === 3")
    wait_until(lecturer, """[...document.querySelectorAll('#cr-wall canvas')].every((c) => {
        const px = (x, y) => [...c.getContext('2d').getImageData(x, y, 1, 1).data];
        const [mid, corner] = [px(c.width / 2, c.height / 2), px(2, 2)];
        return mid[2] > mid[0] + 60 && corner[0] > corner[2] + 60; })""")
    lecturer.screenshot(path=str(artifacts / "classroom-dashboard-1280x800.png"))
    students[0].screenshot(path=str(artifacts / "classroom-student-1280x800.png"))

    # spotlight: a large boundary, the config summary and a playground tab with that config
    wall.get_by_role("button", name="Spotlight Ada").click()
    spot = lecturer.get_by_role("dialog", name="Ada")
    expect(spot).to_be_visible()
    expect(spot.locator("#cr-spot-summary")).to_contain_text("circle", timeout=10000)
    open_btn = spot.get_by_role("button", name="Open their config in a playground tab")
    expect(open_btn).to_be_enabled()
    with lecturer.context.expect_page() as new_tab:
        open_btn.click()
    tab = new_tab.value
    tab.wait_for_load_state()
    assert hash_params(tab)["dataset"] == "circle" and "room" not in hash_params(tab)
    tab.close()
    spot.get_by_role("button", name="Close", exact=True).click()

    # hide names: the wall shows "Student N"
    lecturer.get_by_role("checkbox", name="Hide names").check()
    expect(wall.get_by_role("button", name="Spotlight Ada")).to_have_count(0, timeout=5000)
    expect(wall.get_by_role("button", name=re.compile(r"^Spotlight Student \d$"))).to_have_count(3)

    # the same room from another device with the copied token, on a projector-sized screen
    big = lecturer_factory(1920, 1080)
    big.get_by_role("textbox", name="Room code").fill(code)
    big.get_by_role("textbox", name="Lecturer token").fill(token)
    big.get_by_role("button", name="Open dashboard").click()
    expect(big.get_by_role("list", name="Students' decision boundaries").get_by_role("button")).to_have_count(3, timeout=15000)
    big.wait_for_timeout(1200)
    big.screenshot(path=str(artifacts / "classroom-dashboard-1920x1080.png"))

    # closing the room tells the students
    lecturer.once("dialog", lambda d: d.accept())
    lecturer.get_by_role("button", name="Close room").click()
    for s in students:
        expect(s.get_by_role("region", name=re.compile(f"^Classroom {code}")).get_by_role("status")).to_have_text(
            "the lecturer closed this room", timeout=10000)
        expect(s.get_by_role("combobox", name="Learning rate")).to_be_enabled()


def test_wrong_token_is_refused(lecturer_factory):
    lecturer = lecturer_factory()
    code = new_room(lecturer, "")
    other = lecturer_factory()
    other.get_by_role("textbox", name="Room code").fill(code)
    other.get_by_role("textbox", name="Lecturer token").fill("not-the-token")
    other.get_by_role("button", name="Open dashboard").click()
    expect(other.get_by_role("alert")).to_contain_text("invalid lecturer token", timeout=10000)
    expect(other.get_by_role("button", name="Open dashboard")).to_be_visible()
    assert other.evaluate(f"localStorage.getItem('nnplay-lecturer-token:{code}')") is None


def test_late_joiner_gets_the_last_push_and_can_leave(lecturer_factory, page_factory):
    lecturer = lecturer_factory()
    code = new_room(lecturer, "late")
    lecturer.get_by_role("combobox", name="Preset to push").select_option("mlp-xor")
    lecturer.get_by_role("button", name="Push preset").click()
    expect(lecturer.get_by_role("status")).to_contain_text("pushed")
    student = join(page_factory, code)
    wait_until(student, "window.__nnplay_last_state?.config.dataset === 'xor'")
    assert hash_params(student)["layers"] == "4"
    wall = lecturer.get_by_role("list", name="Students' decision boundaries")
    expect(wall.get_by_role("button")).to_have_count(1, timeout=15000)
    # a bad push is refused with a message naming the field, and changes nothing
    lecturer_factory.allowed.append("status of 422")
    lecturer.get_by_role("textbox", name="Playground link to push").fill("/#learningRate=1000")
    lecturer.get_by_role("button", name="Push link").click()
    expect(lecturer.get_by_role("alert")).to_contain_text("learning_rate")
    student.wait_for_timeout(500)
    assert last_config(student)["learning_rate"] == 0.1 and hash_params(student)["learningRate"] == "0.1"
    # the student tweaks their copy, then the lecturer locks it: a reconnect (a new session)
    # restores the student's own settings, re-joins and keeps the lock, without undoing either
    student.get_by_role("combobox", name="Learning rate").select_option("0.03")
    wait_until(student, "window.__nnplay_last_state?.config.learning_rate === 0.03")
    lecturer.get_by_role("group", name="Lock controls").get_by_role("checkbox", name="Learning rate").check()
    expect(student.get_by_role("combobox", name="Learning rate")).to_be_disabled()
    student.evaluate("window.__nnplay_socket_close_for_test()")
    banner = student.get_by_role("region", name=re.compile(f"^Classroom {code}"))
    expect(banner.get_by_role("status")).not_to_have_text(re.compile("^joined"), timeout=10000)
    expect(banner.get_by_role("status")).to_have_text(re.compile("^joined"), timeout=20000)
    wait_until(student, "window.__nnplay_last_state?.config.learning_rate === 0.03")
    assert (last_config(student)["dataset"], hash_params(student)["learningRate"]) == ("xor", "0.03")
    expect(student.get_by_role("combobox", name="Learning rate")).to_be_disabled()
    expect(student.get_by_role("alert")).to_be_hidden()
    # leaving removes the banner and the room from the URL, and the tile from the wall
    student.get_by_role("button", name="Leave room").click()
    expect(banner).to_have_count(0)
    assert "room" not in hash_params(student)
    expect(wall.get_by_role("button")).to_have_count(0, timeout=15000)


def test_a_reloaded_student_tab_is_the_same_member(lecturer_factory, page_factory, artifacts):
    lecturer = lecturer_factory()
    code = new_room(lecturer, "reload")
    lecturer.get_by_role("combobox", name="Challenge template").select_option(label="Custom")
    lecturer.get_by_role("textbox", name="Title", exact=True).fill("Circle")
    lecturer.get_by_role("combobox", name="Metric").select_option("test_accuracy")
    lecturer.get_by_role("spinbutton", name="Target").fill("0.6")
    lecturer.get_by_role("combobox", name="Rank by").select_option("time")
    lecturer.get_by_role("combobox", name="Dataset").select_option("")
    lecturer.get_by_role("button", name="Start challenge").click()
    lecturer.get_by_role("button", name="Reveal leaderboard").click()
    expect(lecturer.get_by_role("button", name="Reveal leaderboard")).to_have_attribute("aria-pressed", "true")
    student = join(page_factory, code, "Ada")
    wall = lecturer.get_by_role("list", name="Students' decision boundaries")
    expect(wall.get_by_role("button", name="Spotlight Ada")).to_be_visible(timeout=15000)
    banner = student.get_by_role("region", name=re.compile(f"^Classroom {code}"))
    student.get_by_role("button", name="Play", exact=True).click()
    # the revealed leaderboard updates by itself when the result arrives
    expect(banner.get_by_role("table", name="Leaderboard").locator("tr.you")).to_have_count(1, timeout=90000)
    student.get_by_role("button", name="Pause", exact=True).click()
    board = lecturer.locator("#cr-board tbody tr")
    expect(board).to_have_count(1, timeout=15000)
    member = student.evaluate("JSON.parse(sessionStorage.getItem('nnplay-room-member'))")
    assert member["room"] == code and len(member["secret"]) >= 22

    student.reload()
    banner = student.get_by_role("region", name=re.compile(f"^Classroom {code}"))
    expect(banner.get_by_role("status")).to_have_text(re.compile("^joined · 1 in the room"), timeout=20000)
    assert student.evaluate("JSON.parse(sessionStorage.getItem('nnplay-room-member'))") == member
    # the student's result and place are back, and they are one student, not two
    expect(banner.locator(".room-own")).to_contain_text("Target reached after", timeout=10000)
    table = banner.get_by_role("table", name="Leaderboard")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tr.you")).to_have_count(1)
    expect(wall.get_by_role("button", name="Spotlight Ada")).to_have_count(1, timeout=15000)
    lecturer.wait_for_timeout(1500)  # reports of a second member would have come by now
    expect(wall.get_by_role("button")).to_have_count(1)
    expect(lecturer.locator("#cr-count")).to_have_text("1")
    expect(board).to_have_count(1)
    student.screenshot(path=str(artifacts / "classroom-student-reloaded-1280x800.png"))
