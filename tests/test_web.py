"""The search page in a real browser: Debian's chromium driven by Playwright against
`twotower serve` on a free port. Playwright cannot download its own browsers here, so it
is pointed at the system one (`TWOTOWER_CHROMIUM`, default /usr/bin/chromium). Without
that browser the test is skipped, unless TWOTOWER_REQUIRE_BROWSER=1 (as in CI) makes it fail.
"""

import os
import re
import shutil

import pandas as pd
import pytest

from tests.tiny_index import PASSAGES, build_index, served

CHROMIUM = os.environ.get("TWOTOWER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Chromium refuses to run as root with its sandbox; the rest stop it calling Google's hosts.
FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"] + (["--no-sandbox"] if os.geteuid() == 0 else [])


@pytest.fixture(scope="module")
def browser():
    if not os.path.isfile(CHROMIUM):
        message = f"no chromium at {CHROMIUM}: `sudo apt-get install chromium` (see README)"
        if os.environ.get("TWOTOWER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with served(build_index(tmp_path_factory.mktemp("web"))) as url:
        yield url


def test_a_query_fills_all_three_columns_with_the_expected_top_hit(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.fill("#q", "flea life cycle")
    page.press("#q", "Enter")
    for mode in ("dense", "bm25", "hybrid"):
        column = page.locator(f'.column[data-mode="{mode}"]')
        column.locator(".hit").first.wait_for(timeout=30_000)
        first = column.locator(".hit").first
        assert first.locator(".pid").inner_text() == "d1"
        assert first.locator(".rank").inner_text() == "#1"
        assert re.fullmatch(r"\d\.\d{4}", first.locator(".score").inner_text())
        assert [m.inner_text() for m in first.locator("mark").all()] == ["flea", "life", "cycle"]
        assert re.fullmatch(r"\d+ hits? in \d+\.\d ms", column.locator(".took").inner_text())
    assert page.locator('.column[data-mode="dense"] .hit').count() == 8
    assert page.locator('.column[data-mode="bm25"] .hit').count() == 1  # one passage has these words
    assert "q=flea+life+cycle" in page.url
    assert "8 passages" in page.locator("#about").inner_text()
    page.close()


def test_an_empty_query_asks_for_one_and_a_reload_repeats_the_search(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.press("#q", "Enter")
    assert page.locator("#message").inner_text() == "Type a query first."
    assert page.locator(".hit").count() == 0
    page.goto(url + "/?q=coffee+bean&k=10")
    page.locator('.column[data-mode="hybrid"] .hit').first.wait_for(timeout=30_000)
    assert page.locator('.column[data-mode="hybrid"] .hit .pid').first.inner_text() == "d6"
    assert page.input_value("#q") == "coffee bean"
    page.close()


def test_a_passage_holding_html_is_shown_as_text(browser, tmp_path):
    markup = '<img src=x onerror="document.title=\'owned\'"> <b>oven</b> bread'
    table = pd.concat([PASSAGES, pd.DataFrame({"id": ["<i>x</i>"], "text": [markup]})], ignore_index=True)
    with served(build_index(tmp_path, table)) as url:
        page = browser.new_page()
        page.goto(url)
        page.fill("#q", "oven bread <b>")
        page.press("#q", "Enter")
        column = page.locator('.column[data-mode="bm25"]')
        column.locator(".hit").first.wait_for(timeout=30_000)
        texts = column.locator(".hit .text").all_inner_texts()
        assert markup in texts
        assert "<i>x</i>" in column.locator(".hit .pid").all_inner_texts()
        assert page.locator(".hit img, .hit b, .hit i").count() == 0
        assert page.title() == "twotower search"
        page.close()


# Counts the /search answers whose body the page has read: once the count is reached, the page
# has run what it does with each of them (the code after `await response.json()` runs in the
# same microtask checkpoint, before Playwright's next evaluation).
COUNT_ANSWERS = """
window.answersRead = 0;
const json = Response.prototype.json;
Response.prototype.json = function () {
  return json.call(this).then((body) => {
    if (new URL(this.url).pathname === "/search") window.answersRead += 1;
    return body;
  });
};
"""


def test_a_slow_answer_to_an_earlier_query_does_not_replace_the_latest(browser, url):
    page = browser.new_page()
    page.add_init_script(COUNT_ANSWERS)
    held = []
    page.route("**/search?*", lambda route: held.append(route) if "q=flea" in route.request.url
               else route.continue_())
    page.goto(url)
    page.fill("#q", "flea life cycle")
    page.press("#q", "Enter")  # its three requests are held
    page.fill("#q", "coffee bean")
    page.press("#q", "Enter")
    page.wait_for_function("window.answersRead === 3", timeout=30_000)
    columns = [page.locator(f'.column[data-mode="{mode}"]') for mode in ("dense", "bm25", "hybrid")]
    shown = [column.inner_html() for column in columns]
    for column in columns:
        assert column.locator(".hit .pid").first.inner_text() == "d6"
        assert column.locator(".hit mark").first.inner_text() == "coffee"
    assert len(held) == 3
    for route in held:  # the first query's answers now come, after the second's
        route.continue_()
    page.wait_for_function("window.answersRead === 6", timeout=30_000)
    assert [column.inner_html() for column in columns] == shown
    page.close()
