"""The Chrome extension's capture logic (`clients/chrome/capture.js`) in headless chromium, on a
plain page and on a React 18 app (React from Debian's node-react and node-react-dom): the DOM
subtree, styles and box, the React component stack with props and source locations, and the
caps that keep an oversized page from being sent whole."""
from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from test_web_ui import browser

FIXTURES = Path(__file__).parent / "fixtures" / "chrome"
FILES = {
    "/capture.js": REPO_ROOT / "clients" / "chrome" / "capture.js",
    "/vendor/react.development.js": Path("/usr/share/nodejs/react/umd/react.development.js"),
    "/vendor/react-dom.development.js": Path("/usr/share/nodejs/react-dom/umd/react-dom.development.js"),
}


class PageHandler(http.server.SimpleHTTPRequestHandler):
    """The fixtures, the extension's capture.js and Debian's React builds, on 127.0.0.1.
    `/bare/<page>` is the page without its own `<script src="/capture.js">`, as a real app is
    (the extension must bring its own)."""

    def translate_path(self, path):
        route = path.split("?", 1)[0]
        if route in FILES:
            return str(FILES[route])
        return super().translate_path(path)

    def do_GET(self):
        if not self.path.startswith("/bare/"):
            return super().do_GET()
        page = (FIXTURES / self.path.removeprefix("/bare/").split("?", 1)[0]).resolve()
        if page.parent != FIXTURES.resolve() or not page.is_file():
            self.send_error(404)
            return
        body = page.read_text().replace('<script src="/capture.js"></script>', "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


@pytest.fixture(scope="module")
def pages():
    for path in FILES.values():
        if not path.is_file():
            pytest.fail(f"{path} is missing (scripts/setup.sh installs node-react and node-react-dom)")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(PageHandler, directory=str(FIXTURES)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver():
    driver = browser()
    yield driver
    driver.quit()


def run(driver, script: str, *arguments):
    return driver.execute_script(script, *arguments)


def test_plain_dom_subtree_styles_and_box(driver, pages):
    driver.get(f"{pages}/plain.html")
    capture = run(driver, "return __inspectCapture.captureElement(document.getElementById('top'))")
    assert capture["url"] == f"{pages}/plain.html" and capture["title"] == "Plain page"
    assert capture["selector"] == "#top"
    assert capture["viewport"]["width"] > 0 and capture["rect"]["width"] > 0
    assert capture["styles"]["display"] == "block"
    assert capture["dom"] == {
        "tag": "nav", "attributes": {"id": "top"},
        "children": [
            {"tag": "a", "attributes": {"href": "/a", "title": "A link"}, "children": ["First"]},
            {"tag": "a", "attributes": {"href": "/b"}, "children": ["Second"]},
        ],
    }
    assert capture["truncated"] == {"domNodesOmitted": 0, "textNodesOmitted": 0, "textCut": False}
    # Not a React page.
    assert run(driver, "return __inspectCapture.reactComponents(document.getElementById('top'))") is None
    # A selector that finds the element again.
    selector = run(driver, "return __inspectCapture.selector(document.querySelectorAll('#list li em')[3])")
    assert selector == "#list > li:nth-of-type(4) > em"
    assert run(driver, f"return document.querySelector({json.dumps(selector)}).textContent") == "item 3"


def test_an_oversized_subtree_is_capped_and_says_so(driver, pages):
    driver.get(f"{pages}/plain.html")
    capture = run(driver, "return __inspectCapture.captureElement(document.getElementById('list'))")
    assert capture["styles"]["display"] == "grid" and capture["styles"]["grid-template-columns"]

    def count(node):
        return 1 + sum(count(child) for child in node.get("children", []) if isinstance(child, dict))

    assert count(capture["dom"]) == 200, "the cap"
    # 1 list + 1000 items × 3 elements = 3001 elements in all.
    assert capture["truncated"]["domNodesOmitted"] == 3001 - 200
    long = run(driver, "return __inspectCapture.captureElement(document.getElementById('long'))")
    assert long["truncated"]["textCut"] is True
    assert len(long["dom"]["children"][0]) == 201 and long["dom"]["children"][0].endswith("…")
    assert len(long["dom"]["attributes"]["data-note"]) == 201
    # The whole capture stays under its byte budget: the DOM is pruned level by level.
    fitted = run(driver, """
        const capture = __inspectCapture.captureElement(document.getElementById('list'));
        const limits = Object.assign({}, __inspectCapture.LIMITS, {totalBytes: 4096});
        return __inspectCapture.fit(capture, limits);""")
    assert len(json.dumps(fitted, separators=(",", ":"), ensure_ascii=False)) <= 4096
    assert fitted["truncated"]["domDepthKept"] < 12 and fitted["truncated"]["domNodesOmitted"] > 2801
    assert fitted["truncated"]["overTotal"] is False


def test_a_text_heavy_node_is_capped_too(driver, pages):
    """20,000 lines of text between <br>s: the element cap stops the text as well."""
    driver.get(f"{pages}/plain.html")
    capture = run(driver, """
        const capture = __inspectCapture.captureElement(document.getElementById('log'));
        return __inspectCapture.fit(capture);""")
    size = len(json.dumps(capture, separators=(",", ":"), ensure_ascii=False))
    assert size <= capture["limits"]["totalBytes"], size
    texts = [child for child in capture["dom"]["children"] if isinstance(child, str)]
    assert 0 < len(texts) <= 200 and texts[0] == "line 0 of the log"
    assert capture["truncated"]["textNodesOmitted"] >= 20000 - 200
    assert capture["truncated"]["domNodesOmitted"] >= 20000 - 200


def test_secrets_are_not_captured(driver, pages):
    driver.get(f"{pages}/plain.html")
    form = run(driver, "return __inspectCapture.captureElement(document.getElementById('login'))")
    inputs = [child["attributes"] for child in form["dom"]["children"]]
    assert inputs[0] == {"type": "password", "name": "pw", "value": "[redacted]"}
    assert inputs[1] == {"type": "hidden", "name": "csrf", "value": "[redacted]"}
    assert inputs[2] == {"name": "q", "value": "lamps", "data-api-key": "[redacted]"}
    assert "hunter2" not in json.dumps(form) and "k-123" not in json.dumps(form)


def test_react_components_props_and_sources(driver, pages):
    driver.get(f"{pages}/react-app.html")
    react = run(driver, "return __inspectCapture.reactComponents(document.querySelector('.price'))")
    names = [component["name"] for component in react["components"]]
    assert names == ["Price", "BuyButton", "ProductCard", "App"], names
    price, button, card, app = react["components"]
    assert price["props"] == {"amount": 49, "currency": "EUR"}
    assert price["source"] == {"fileName": "src/BuyButton.jsx", "lineNumber": 9, "columnNumber": 7}
    assert button["props"]["label"] == "Add to cart"
    assert button["props"]["onBuy"] == "[function addToCart]"
    assert button["source"] == {"fileName": "src/ProductCard.jsx", "lineNumber": 21, "columnNumber": 9}
    product = card["props"]["product"]
    assert product["name"] == "Reading lamp" and product["tags"] == ["home", "light"]
    assert product["added"] == "2026-01-02T00:00:00.000Z" and product["self"] == "[cycle]"
    # Props whose names say they are secrets are not sent, whatever they hold.
    assert card["props"]["secret"] == "[redacted]" and card["props"]["authToken"] == "[redacted]"
    assert card["props"]["onAdd"] == "[function onAdd]"
    # The source is where the element was created: ProductCard's in App.jsx; App's own element
    # was created without one.
    assert card["source"] == {"fileName": "src/App.jsx", "lineNumber": 4}
    assert app["props"] == {} and "source" not in app
    assert react["omitted"] == 0
    # From a host element deep inside: the nearest fibre, then up.
    from_button = run(driver, "return __inspectCapture.reactComponents(document.getElementById('buy'))")
    assert [c["name"] for c in from_button["components"]] == ["BuyButton", "ProductCard", "App"]


def test_react_props_are_capped(driver, pages):
    driver.get(f"{pages}/react-app.html")
    react = run(driver, """
        const limits = Object.assign({}, __inspectCapture.LIMITS, {propsBytes: 60, components: 2});
        return __inspectCapture.reactComponents(document.querySelector('.price'), limits);""")
    assert [c["name"] for c in react["components"]] == ["Price", "BuyButton"]
    assert react["omitted"] == 2
    button = react["components"][1]
    assert button.get("propsTruncated") is True and len(json.dumps(button["props"])) <= 80
    serialised = run(driver, """
        const big = {list: Array.from({length: 50}, (_, i) => i), deep: {a: {b: {c: {d: {e: 1}}}}},
                     n: NaN, u: undefined, s: 'x'.repeat(500), el: document.body};
        return __inspectCapture.serialise(big, __inspectCapture.LIMITS);""")
    assert serialised["list"][:3] == [0, 1, 2] and serialised["list"][-1] == "[30 more]"
    assert serialised["deep"] == {"a": {"b": {"c": "[object]"}}}
    assert serialised["n"] == "NaN" and serialised["u"] == "[undefined]" and serialised["el"] == "[element body]"
    assert len(serialised["s"]) == 201
