"""The Chrome extension end to end: headless Debian chromium loads `clients/chrome` unpacked,
its side panel signs in to a running Inspect, the picker picks an element of a small React app
served on 127.0.0.1, and the capture goes with a prompt to a new session; the test reads what
reached the Gateway (the prompt's attachment, stored as an artifact) and the panel follows the
turn to its end. Also: the packaging script and the update manifest the Gateway serves."""
from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import time
import zipfile

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import REPO_ROOT, start_inspect
from test_chrome_capture import pages  # noqa: F401  (the fixture serving the pages, shared)
from test_sse import auth, read_frames

EXTENSION = REPO_ROOT / "clients" / "chrome"
# The id the manifest's development key gives the unpacked extension.
EXTENSION_ID = "liglmfcppchphebhipdonofmlndaelco"
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The packaging script's output, signed with a key made for the test."""
    out = tmp_path_factory.mktemp("chrome-package")
    key = out / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "package-chrome-extension.sh"), "--out", str(out), "--key", str(key),
         "--update-url", "http://127.0.0.1:9/chrome/updates.xml"],
        capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def system(tmp_path_factory, package):
    with start_inspect(tmp_path_factory, {"INSPECT_CHROME_EXTENSION_DIR": str(package)}) as running:
        registered = requests.post(running.http_url("Gateway", "/v1/repositories"), headers=auth(running.token),
                                   json={"repository": "local/demo"}, timeout=TIMEOUT_S)
        assert registered.status_code == 200, registered.text
        yield running


@pytest.fixture
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1280,900", f"--load-extension={EXTENSION}",
        f"--disable-extensions-except={EXTENSION}",
        # Anything not on loopback goes to a closed local port: the browser never leaves the machine.
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",
    ]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def wait(driver, condition, what: str, timeout: float = TIMEOUT_S):
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception as error:
        raise AssertionError(f"timed out waiting for {what}: {error}") from None


def test_pick_an_element_and_send_it(system, pages, driver):
    # The app as it really is: no capture.js of its own; the extension brings it.
    driver.get(f"{pages}/bare/react-app.html")
    # Nothing of the extension's is in the page's own world until the person picks.
    assert driver.execute_script("return typeof window.__inspectCapture") == "undefined"
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".price"), "the React app")
    page = driver.current_window_handle

    driver.switch_to.new_window("tab")
    driver.get(f"chrome-extension://{EXTENSION_ID}/panel.html")
    panel = driver.current_window_handle
    wait(driver, lambda d: d.find_element(By.ID, "settings").get_attribute("open") is not None, "the sign-in form")
    driver.find_element(By.ID, "gateway").send_keys(system.http_url("Gateway", ""))
    driver.find_element(By.ID, "token").send_keys(system.token)
    driver.find_element(By.ID, "model").send_keys("scripted:demo")
    driver.find_element(By.CSS_SELECTOR, "#settings-form button").click()
    wait(driver, lambda d: "signed in as" in d.find_element(By.ID, "who").text, "signing in")
    wait(driver, lambda d: [o.text for o in Select(d.find_element(By.ID, "repository")).options] and
         "local/demo" in [o.text for o in Select(d.find_element(By.ID, "repository")).options], "the repositories")

    tab = Select(driver.find_element(By.ID, "tab"))
    tab.select_by_visible_text(next(o.text for o in tab.options if o.text.startswith("Lamp shop")))
    driver.find_element(By.ID, "pick").click()
    wait(driver, lambda d: "Click an element" in d.find_element(By.ID, "pick-status").text, "the picker")

    # On the page: the outline follows the pointer; a click picks the price inside the button.
    driver.switch_to.window(page)
    price = driver.find_element(By.CSS_SELECTOR, ".price")
    ActionChains(driver).move_to_element(price).pause(0.3).perform()
    outline = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-inspect-overlay]"), "the outline")
    assert outline and "span" in outline[-1].get_attribute("textContent")
    ActionChains(driver).click(price).perform()
    # The click was the picker's: the page did not get it, and the outline is gone.
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-inspect-overlay]"), "the picker to end")
    assert driver.execute_script("return window.pageEvents") == []

    driver.switch_to.window(panel)
    wait(driver, lambda d: d.find_element(By.ID, "captured").is_displayed(), "the capture in the panel")
    components = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#components li")]
    assert components[:2] == ["Price — src/BuyButton.jsx:9", "BuyButton — src/ProductCard.jsx:21"], components
    assert driver.find_element(By.ID, "capture-summary").text.startswith("<span> #buy > span")

    Select(driver.find_element(By.ID, "repository")).select_by_visible_text("local/demo")
    driver.find_element(By.ID, "prompt").send_keys("Show the price in bold")
    driver.find_element(By.ID, "send").click()
    session_link = wait(driver, lambda d: d.find_element(By.ID, "session-link").text, "the session")
    session_id = re.search(r"ses-\S+", session_link).group(0)
    # The panel follows the turn to its end (the scripted demo pushes its fix).
    wait(driver, lambda d: d.find_element(By.ID, "outcome").text.startswith("Done."), "the turn to finish", 120)
    notes = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#events li")]
    assert notes[0] == "Started" and any(note.startswith("Pushed inspect/") for note in notes), notes

    # What reached the Gateway: a Chrome session whose prompt carries the capture as an artifact.
    session = requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}"), headers=auth(system.token),
                           timeout=TIMEOUT_S).json()["session"]
    assert session["client"] == "chrome" and session["repository"]["fullName"] == "local/demo"
    with requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}/events"), headers=auth(system.token),
                      stream=True, timeout=TIMEOUT_S) as events:
        frames = read_frames(events, 50, until="prompt_queued")
    queued = json.loads(frames[-1]["data"])["promptQueued"]
    assert queued["text"] == "Show the price in bold" and queued["client"] == "chrome"
    attachment = queued["attachments"][0]
    assert attachment["name"] == "element.json"
    assert attachment["mediaType"] == "application/vnd.inspect.element+json" and "data" not in attachment
    content = requests.get(
        system.http_url("Gateway", f"/v1/sessions/{session_id}/artifacts/{attachment['artifactId']}/content"),
        headers=auth(system.token), timeout=TIMEOUT_S)
    assert content.status_code == 200, content.text
    capture = content.json()
    assert capture["version"] == 1 and capture["url"] == f"{pages}/bare/react-app.html"
    assert capture["dom"] == {"tag": "span", "attributes": {"class": "price"}, "children": ["EUR 49"]}
    assert capture["styles"]["display"] == "inline"
    names = [component["name"] for component in capture["react"]["components"]]
    assert names == ["Price", "BuyButton", "ProductCard", "App"]
    assert capture["react"]["components"][1]["props"]["label"] == "Add to cart"
    assert capture["react"]["components"][1]["props"]["onBuy"] == "[function addToCart]"
    assert capture["react"]["components"][2]["props"]["authToken"] == "[redacted]"

    # A second pick goes to the same session (now selected); the panel follows that prompt's
    # turn, not the first one (the scripted demo has no second act: this turn fails).
    driver.find_element(By.ID, "pick").click()
    driver.switch_to.window(page)
    heading = driver.find_element(By.CSS_SELECTOR, "h2")
    ActionChains(driver).move_to_element(heading).pause(0.3).click(heading).perform()
    driver.switch_to.window(panel)
    wait(driver, lambda d: d.find_element(By.ID, "captured").is_displayed(), "the second capture")
    assert Select(driver.find_element(By.ID, "session")).first_selected_option.get_attribute("value") == session_id
    driver.find_element(By.ID, "prompt").send_keys("And a larger heading")
    driver.find_element(By.ID, "send").click()
    wait(driver, lambda d: d.find_element(By.ID, "outcome").text.startswith("failed:"), "the second turn", 120)
    assert not driver.find_element(By.ID, "captured").is_displayed(), "the capture went with its prompt only"
    frames = []
    for _ in range(2):
        after = frames[-1]["id"] if frames else "0"
        with requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}/events?after_seq={after}"),
                          headers=auth(system.token), stream=True, timeout=TIMEOUT_S) as events:
            frames += read_frames(events, 500, until="turn_finished")
    prompts = [json.loads(f["data"])["promptQueued"] for f in frames if f["event"] == "prompt_queued"]
    assert [p["text"] for p in prompts] == ["Show the price in bold", "And a larger heading"]
    assert [len(p["attachments"]) for p in prompts] == [1, 1]


def test_escape_cancels_the_picker(system, pages, driver):
    driver.get(f"{pages}/bare/plain.html")
    page = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"chrome-extension://{EXTENSION_ID}/panel.html")
    panel = driver.current_window_handle
    tab = Select(wait(driver, lambda d: d.find_element(By.ID, "tab"), "the panel"))
    wait(driver, lambda d: any(o.text.startswith("Plain page") for o in Select(d.find_element(By.ID, "tab")).options),
         "the page in the list")
    tab.select_by_visible_text(next(o.text for o in tab.options if o.text.startswith("Plain page")))
    driver.find_element(By.ID, "pick").click()
    driver.switch_to.window(page)
    ActionChains(driver).move_to_element(driver.find_element(By.ID, "top")).pause(0.2).perform()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-inspect-overlay]"), "the outline")
    # A page script's synthetic click does not pick: the picker is still on.
    driver.execute_script("document.getElementById('top').click()")
    time.sleep(0.5)
    assert driver.find_elements(By.CSS_SELECTOR, "[data-inspect-overlay]")
    ActionChains(driver).send_keys("\ue00c").perform()  # Escape
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-inspect-overlay]"), "the picker to end")
    driver.switch_to.window(panel)
    wait(driver, lambda d: d.find_element(By.ID, "pick-status").text == "Cancelled.", "the panel to hear it")

    assert not driver.find_element(By.ID, "captured").is_displayed()


def test_package_and_update_manifest(system, package):
    release = json.loads((package / "extension.json").read_text())
    assert release["version"] == json.loads((EXTENSION / "manifest.json").read_text())["version"]
    assert re.fullmatch(r"[a-p]{32}", release["id"]) and release["id"] != EXTENSION_ID
    with zipfile.ZipFile(package / f"inspect-chrome-{release['version']}.zip") as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "capture.js", "picker.js", "react-bridge.js", "panel.html", "panel.js"} <= names
    assert manifest["update_url"] == "http://127.0.0.1:9/chrome/updates.xml" and manifest["key"]
    crx = (package / "inspect.crx").read_bytes()
    assert crx[:4] == b"Cr24" and int.from_bytes(crx[4:8], "little") == 3  # CRX version 3

    updates = requests.get(system.http_url("Gateway", "/chrome/updates.xml"), timeout=TIMEOUT_S)
    assert updates.status_code == 200 and updates.headers["Content-Type"].startswith("application/xml")
    assert f"appid='{release['id']}'" in updates.text and f"version='{release['version']}'" in updates.text
    codebase = re.search(r"codebase='([^']+)'", updates.text).group(1)
    assert codebase == system.http_url("Gateway", "/chrome/inspect.crx")
    served = requests.get(codebase, timeout=TIMEOUT_S)
    assert served.status_code == 200 and served.content == crx
    assert served.headers["Content-Type"] == "application/x-chrome-extension"


class GatewayStandIn(http.server.BaseHTTPRequestHandler):
    """Just enough of the Gateway's REST API for the panel, whose session's turn opens a pull
    request (the demo repository never does): the same JSON and SSE the Gateway sends."""

    prompts: list[dict] = []
    PULL = "https://github.example/acme/web/pull/42"

    def log_message(self, *arguments):
        pass

    def reply(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer tok-standin":
            return self.reply({"error": {"code": "UNAUTHENTICATED", "message": "bad token"}}, 401)
        path = self.path.split("?", 1)[0]
        if path == "/v1/me":
            return self.reply({"id": "usr-1", "displayName": "Ada"})
        if path == "/v1/repositories":
            return self.reply({"repositories": [{"name": "acme/web"}]})
        if path == "/v1/sessions":
            return self.reply({"sessions": [{"id": "ses-0-existing", "title": "Checkout",
                                             "repository": {"fullName": "acme/web"}}]})
        if path == "/v1/sessions/ses-0-existing":
            return self.reply({"session": {"id": "ses-0-existing"}})
        if path == "/v1/sessions/ses-0-existing/events":
            frames = [
                ("turn_started", 7, {"turnId": "turn-old", "turnStarted": {"turnId": "turn-old", "promptIds": ["msg-old"]}}),
                ("turn_finished", 8, {"turnId": "turn-old", "turnFinished": {"outcome": "TURN_OUTCOME_FAILED", "reason": "old"}}),
                ("turn_started", 9, {"turnId": "turn-new", "turnStarted": {"turnId": "turn-new", "promptIds": ["msg-new"]}}),
                ("tool_call", 10, {"turnId": "turn-new", "toolCall": {"name": "edit_file", "state": "TOOL_CALL_STATE_RUNNING"}}),
                ("branch_pushed", 11, {"turnId": "turn-new", "branchPushed": {"branch": "inspect/ses-0-existing"}}),
                ("pull_request", 12, {"turnId": "turn-new", "pullRequest": {"url": self.PULL, "state": "PULL_REQUEST_STATE_OPEN"}}),
                ("turn_finished", 13, {"turnId": "turn-new", "turnFinished": {"outcome": "TURN_OUTCOME_SUCCEEDED"}}),
            ]
            body = "".join(f"id: {seq}\r\nevent: {kind}\r\ndata: {json.dumps(data)}\r\n\r\n" for kind, seq, data in frames)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.reply({"error": {"code": "NOT_FOUND", "message": path}}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/v1/sessions/ses-0-existing/prompts":
            GatewayStandIn.prompts.append(body)
            return self.reply({"promptId": "msg-new", "queuePosition": 1, "seq": "9"})
        self.reply({"error": {"code": "NOT_FOUND", "message": self.path}}, 404)


def test_added_to_an_existing_session_the_panel_shows_its_pull_request(pages, driver):
    """Against a stand-in Gateway: the panel adds the capture to a chosen session, skips the
    older turn in the stream, and ends with the pull request's link (CRLF frames too)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GatewayStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        driver.get(f"{pages}/bare/react-app.html")
        page = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(f"chrome-extension://{EXTENSION_ID}/panel.html")
        panel = driver.current_window_handle
        wait(driver, lambda d: d.find_element(By.ID, "settings").get_attribute("open") is not None, "the form")
        driver.find_element(By.ID, "gateway").send_keys(f"http://127.0.0.1:{server.server_address[1]}")
        driver.find_element(By.ID, "token").send_keys("tok-standin")
        driver.find_element(By.CSS_SELECTOR, "#settings-form button").click()
        wait(driver, lambda d: "signed in as Ada" in d.find_element(By.ID, "who").text, "signing in")
        Select(driver.find_element(By.ID, "session")).select_by_value("ses-0-existing")
        tab = Select(driver.find_element(By.ID, "tab"))
        tab.select_by_visible_text(next(o.text for o in tab.options if o.text.startswith("Lamp shop")))
        driver.find_element(By.ID, "pick").click()
        driver.switch_to.window(page)
        button = wait(driver, lambda d: d.find_element(By.ID, "buy"), "the button")
        ActionChains(driver).move_to_element(button).pause(0.3).click(button).perform()
        driver.switch_to.window(panel)
        wait(driver, lambda d: d.find_element(By.ID, "captured").is_displayed(), "the capture")
        driver.find_element(By.ID, "prompt").send_keys("Green, please")
        driver.find_element(By.ID, "send").click()
        link = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#outcome a"), "the pull request link")[0]
        assert link.get_attribute("href") == GatewayStandIn.PULL and link.text == "Pull request"
        assert driver.find_element(By.ID, "outcome").text.startswith("Done.")
        notes = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#events li")]
        assert notes == ["Started", "Running edit_file", "Pushed inspect/ses-0-existing"], notes
        sent = GatewayStandIn.prompts[-1]
        assert sent["text"] == "Green, please" and sent["client"] == "chrome" and sent["idempotencyKey"]
        assert sent["attachments"][0]["mediaType"] == "application/vnd.inspect.element+json"
    finally:
        server.shutdown()
        server.server_close()
