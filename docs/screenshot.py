"""Take the README's screenshot of the search page: `twotower serve` over an index folder,
one query typed into the page in Debian's chromium (as tests/test_web.py drives it).

    python docs/screenshot.py --index indexes/msmarco --query "how long do fleas live"
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_web import CHROMIUM, FLAGS  # noqa: E402
from tests.tiny_index import served  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/search-page.png"))
    parser.add_argument("-k", default="10")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with served(args.index, timeout=600) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url)
        page.select_option("#k", args.k)
        page.fill("#q", args.query)
        page.press("#q", "Enter")
        for mode in ("dense", "bm25", "hybrid"):
            page.locator(f'.column[data-mode="{mode}"] .hit').first.wait_for(timeout=60_000)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
