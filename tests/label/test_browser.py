"""The labelling page in a real browser: Debian's headless Chromium, driven by selenium through
``/usr/bin/chromedriver`` (so Selenium Manager never downloads anything). It answers by clicking
and by keyboard, undoes, kills and restarts the server, resumes, and checks the stored answers.
The answers are scripted by this test. With ``ADVAUG_SCREENSHOT=path.png`` it also saves the
README's screenshot of the page.

Skips (saying why) only where the browser cannot be found:
``apt-get install chromium chromium-driver``."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from advaug.label import LabelStore
from advaug.label.store import Item

from .helpers import start_server

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).is_file()),
    shutil.which("chromium"),
)
pytestmark = pytest.mark.skipif(
    not CHROMEDRIVER.is_file() or not CHROMIUM,
    reason="headless Chromium not found (/usr/bin/chromedriver and chromium): "
    "apt-get install chromium chromium-driver",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,980", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    yield driver
    driver.quit()


def digits_set(path: Path, n: int = 12) -> LabelStore:
    """n real digits test images (32×32, classes 0-9) as a labelling set; the page does not know
    or care which kind an item is, so the kinds just cycle."""
    from advaug.config import build_config
    from advaug.data.splits import load_splits
    from advaug.label.items import png_bytes

    test = load_splits(build_config("smoke").data).test
    items = [
        (Item(i, ("uae", "gan", "real")[i % 3], int(test.y[i])), png_bytes(test.x[i]))
        for i in range(n)
    ]
    return LabelStore.create(path, items, {"classes": [str(c) for c in range(10)], "seed": 0})


def wait(driver, cond, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: cond(d))


def shown(driver) -> int:
    """The item whose image is on screen (after it loaded)."""
    item = wait(driver, lambda d: d.find_element("id", "image").get_attribute("data-item"))
    return int(item)


def progress(driver, done: int, total: int) -> None:
    wait(driver, lambda d: d.find_element("id", "progress").text == f"{done} / {total} labelled")


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_label_in_a_real_browser(browser, tmp_path: Path):
    t0 = time.perf_counter()
    store = digits_set(tmp_path / "digits.sqlite")
    order = store.order("alice")
    proc, url = start_server(store.path, "alice")
    try:
        browser.get(url)
        progress(browser, 0, 12)
        first = shown(browser)
        assert first == order[0]
        img = browser.find_element("id", "image")
        assert img.value_of_css_property("image-rendering") == "pixelated"
        assert img.size["width"] >= 256 and img.get_property("naturalWidth") == 32
        buttons = browser.find_elements("css selector", "#choices button")
        names = [b.find_elements("tag name", "span")[1].text for b in buttons]
        assert names == [str(c) for c in range(10)]
        buttons[7].click()  # by clicking
        progress(browser, 1, 12)
        assert shown(browser) == order[1]
        press(browser, "3")  # by keyboard
        progress(browser, 2, 12)
        assert shown(browser) == order[2]
        press(browser, "n")  # none / cannot tell
        progress(browser, 3, 12)
        press(browser, "u")  # undo: the same image comes back
        progress(browser, 2, 12)
        assert shown(browser) == order[2]
        browser.find_element("id", "none").click()
        progress(browser, 3, 12)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        kill(proc)  # the server dies without warning; the answers are already stored

    proc, url2 = start_server(store.path, "alice")
    try:
        assert url2 != url
        browser.get(url2)
        progress(browser, 3, 12)  # resumed where alice stopped
        assert shown(browser) == order[3]
        if os.environ.get("ADVAUG_SCREENSHOT"):
            shot = Path(os.environ["ADVAUG_SCREENSHOT"])
            shot.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(shot))
        press(browser, "5")
        progress(browser, 4, 12)
        # another rater, who types a name into the page
        browser.get(url2.split("&rater=")[0])
        name = wait(browser, lambda d: d.find_element("id", "name"))
        wait(browser, lambda d: name.is_displayed())
        name.send_keys("bob\n")
        progress(browser, 0, 12)
        assert "rater=bob" in browser.current_url
        assert shown(browser) == store.order("bob")[0]
        press(browser, "9")
        progress(browser, 1, 12)
        browser.get(url2.split("?")[0])  # without the token: refused
        assert "token" in browser.find_element("tag name", "body").text
    finally:
        kill(proc)
    got = [(a.rater, a.item, a.choice) for a in LabelStore(store.path).answers()]
    assert got == [
        ("alice", order[0], 7),
        ("alice", order[1], 3),
        ("alice", order[2], -1),
        ("alice", order[3], 5),
        ("bob", store.order("bob")[0], 9),
    ]
    print(f"browser test: {time.perf_counter() - t0:.1f} s")


def test_more_than_ten_classes_take_a_typed_number(browser, tmp_path: Path):
    items = [(Item(i, "real", i % 12), digits_png(i)) for i in range(3)]
    store = LabelStore.create(
        tmp_path / "k12.sqlite", items, {"classes": [f"c{i}" for i in range(12)]}
    )
    proc, url = start_server(store.path, "carol")
    try:
        browser.get(url)
        progress(browser, 0, 3)
        first = shown(browser)
        press(browser, "1")
        press(browser, "1")
        assert "11" in browser.find_element("id", "typed").text
        press(browser, "\ue007")  # Enter
        progress(browser, 1, 3)
        press(browser, "4")
        press(browser, "\ue00c")  # Escape clears the typed number: nothing is answered
        press(browser, "\ue007")
        time.sleep(0.3)
        progress(browser, 1, 3)
    finally:
        kill(proc)
    assert [(a.item, a.choice) for a in LabelStore(store.path).answers()] == [(first, 11)]


def digits_png(i: int) -> bytes:
    import torch

    from advaug.label.items import png_bytes

    return png_bytes(torch.full((3, 32, 32), i / 10))
