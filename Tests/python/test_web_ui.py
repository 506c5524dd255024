"""The web client in a real browser (Debian's chromium, headless, driven by selenium through
chromium-driver) against a running Inspect: sessions stream live, follow-ups queue during a run,
stop works, a dropped connection resumes without losing or repeating a line, two people in one
session see each other's messages with their names, and the pages fit a phone's width.

Screenshots of the main pages are saved under $INSPECT_SCREENSHOT_DIR (default
`.ci-artifacts/screenshots/` in the repository)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_sse import read_frames

TIMEOUT_S = 30
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("INSPECT_SCREENSHOT_DIR", REPO_ROOT / ".ci-artifacts" / "screenshots"))

# A turn that runs a command for a few seconds (so there is time to queue and to stop), then a
# turn for the follow-up. Line k answers a request holding k assistant messages.
SLOW = [
    {"text": "Working on it.", "tool_calls": [{"name": "run_command", "arguments": {"command": "sleep 4; echo slept"}}]},
    {"expect": "slept", "text": "Finished the first part."},
    {"text": "Follow-up handled."},
]


def browser(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--disable-extensions", f"--window-size={width},{height}",
        # Anything not on loopback goes to a closed local port: the browser never leaves the machine.
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",
        # A fake microphone (a beep), granted without asking: for voice prompts.
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    ]:
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def sign_in(driver, system, token: str, path: str = "/") -> None:
    driver.get(system.http_url("Gateway", "/"))
    driver.execute_script("localStorage.setItem('inspect.token', arguments[0])", token)
    driver.get(system.http_url("Gateway", path))


def wait(driver, condition, timeout: float = TIMEOUT_S, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def text_of(driver, css: str) -> str:
    return driver.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.textContent : ''", css)


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def write_transcript(system, name: str, turns: list[dict]) -> str:
    path = system.data_dir / "transcripts" / f"{name}.transcript.jsonl"
    path.write_text("\n".join(json.dumps(turn) for turn in turns) + "\n")
    return f"scripted:{name}"


def new_user(system, name: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    added = subprocess.run(
        [str(system.bin_dir / "inspect"), "admin", "users", "add", name, "--with-token", "--data-dir", str(system.data_dir)],
        capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert added.returncode == 0, added.stderr
    user_id = re.search(r"created (usr-[0-9a-z]+)", added.stdout).group(1)
    secret = re.search(r": (insp_\S+)", added.stdout).group(1)
    return user_id, secret


@pytest.fixture
def driver():
    try:
        chrome = browser()
    except WebDriverException as error:
        pytest.fail(f"chromium could not start under chromedriver: {error}")
    try:
        yield chrome
    finally:
        chrome.quit()


def start_session(driver, model: str, prompt: str) -> str:
    wait(driver, lambda d: d.find_elements(By.ID, "new-session"), message="the new-session form")
    driver.find_element(By.ID, "repository").send_keys("local/demo")
    driver.find_element(By.ID, "model").send_keys(model)
    driver.find_element(By.ID, "first-prompt").send_keys(prompt)
    driver.find_element(By.CSS_SELECTOR, "#new-session button[type=submit]").click()
    wait(driver, lambda d: re.search(r"/sessions/(ses-[0-9a-z-]+)$", d.current_url), message="the session page")
    return re.search(r"/sessions/(ses-[0-9a-z-]+)$", driver.current_url).group(1)


def test_stream_queue_and_follow_up(inspect_system, driver):
    model = write_transcript(inspect_system, "web-slow", SLOW)
    sign_in(driver, inspect_system, inspect_system.token)
    shot(driver, "sessions")
    session = start_session(driver, model, "First, do the slow part")

    # Tokens stream in, the tool call shows up running.
    wait(driver, lambda d: "Working on it." in text_of(d, "#log"), message="streamed text")
    wait(driver, lambda d: "RUNNING" in text_of(d, "#log details.tool"), message="a running tool call")
    assert text_of(driver, "#connection") == "live"

    # A follow-up sent during the run is queued, visibly.
    driver.find_element(By.ID, "prompt").send_keys("Then the follow-up")
    driver.find_element(By.ID, "send").click()
    wait(driver, lambda d: "Then the follow-up" in text_of(d, "#queue"), message="the queued follow-up")
    shot(driver, "session-running")

    # The first turn ends, then the follow-up runs; the queue empties.
    wait(driver, lambda d: "Finished the first part." in text_of(d, "#log"), message="the first turn's answer")
    wait(driver, lambda d: "Follow-up handled." in text_of(d, "#log"), message="the follow-up's answer")
    wait(driver, lambda d: text_of(d, "#queue").strip() == "", message="an empty queue")
    log = text_of(driver, "#log")
    assert log.count("Working on it.") == 1
    assert log.count("Follow-up handled.") == 1
    assert log.index("First, do the slow part") < log.index("Then the follow-up") < log.index("Follow-up handled.")
    shot(driver, "session")

    # The list shows the session with its live state.
    driver.get(inspect_system.http_url("Gateway", "/"))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-session='{session}']"), message="the listed session")


def test_edit_and_cancel_queued_prompts(inspect_system, driver):
    # The first turn waits (a long command) until the test stops it, so the queue stays put
    # however slow the machine; the stop leaves the queue, whose edited prompt runs next.
    model = write_transcript(inspect_system, "web-queue", [
        {"text": "Working on it.", "tool_calls": [{"name": "run_command", "arguments": {"command": "sleep 120"}}]},
        {"text": "Follow-up handled."},
    ])
    sign_in(driver, inspect_system, inspect_system.token)
    session = start_session(driver, model, "First, do the slow part")
    wait(driver, lambda d: "RUNNING" in text_of(d, "#log details.tool"), message="a running tool call")
    for text in ["Keep this one", "Drop this one"]:
        driver.find_element(By.ID, "prompt").send_keys(text)
        driver.find_element(By.ID, "send").click()
        wait(driver, lambda d, text=text: text in text_of(d, "#queue"), message=f"'{text}' queued")

    # Edit the first (the browser's prompt dialog), cancel the second.
    driver.find_element(By.CSS_SELECTOR, "#queue li:first-child button.edit").click()
    dialog = WebDriverWait(driver, TIMEOUT_S).until(lambda d: d.switch_to.alert)
    dialog.send_keys("Keep this one, edited")
    dialog.accept()
    wait(driver, lambda d: "Keep this one, edited" in text_of(d, "#queue"), message="the edited prompt in the queue")
    driver.find_element(By.CSS_SELECTOR, "#queue li:nth-child(2) button.cancel").click()
    wait(driver, lambda d: "Drop this one" not in text_of(d, "#queue"), message="the cancelled prompt gone from the queue")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#queue li")) == 1
    # The log shows the edit, and the cancelled prompt marked as such.
    wait(driver, lambda d: "Keep this one, edited" in text_of(d, "#log"), message="the edit in the log")
    assert "Drop this one (cancelled)" in text_of(driver, "#log")

    # Only the edited prompt runs next.
    driver.find_element(By.ID, "stop").click()
    wait(driver, lambda d: "Turn cancelled" in text_of(d, "#log"), message="the stopped first turn")
    wait(driver, lambda d: "Follow-up handled." in text_of(d, "#log"), message="the follow-up's answer")
    wait(driver, lambda d: text_of(d, "#queue").strip() == "", message="an empty queue")
    headers = {"Authorization": f"Bearer {inspect_system.token}"}
    last = requests.get(inspect_system.http_url("Gateway", f"/v1/sessions/{session}"), headers=headers,
                        timeout=TIMEOUT_S).json()["session"]["lastSeq"]
    with requests.get(inspect_system.http_url("Gateway", f"/v1/sessions/{session}/events"), headers=headers,
                      stream=True, timeout=TIMEOUT_S) as stream:
        events = [json.loads(frame["data"]) for frame in read_frames(stream, int(last))]
    queued = {event["promptQueued"]["text"]: event["promptQueued"]["messageId"] for event in events if "promptQueued" in event}
    started = [event["turnStarted"]["promptIds"] for event in events if "turnStarted" in event]
    assert started[1] == [queued["Keep this one"]], (started, queued)


def test_stop(inspect_system, driver):
    model = write_transcript(inspect_system, "web-stop", SLOW)
    sign_in(driver, inspect_system, inspect_system.token)
    start_session(driver, model, "Start something slow")
    wait(driver, lambda d: "RUNNING" in text_of(d, "#log details.tool"), message="a running tool call")
    wait(driver, lambda d: text_of(d, "#state") == "running", message="the session shown running")
    driver.find_element(By.ID, "stop").click()
    wait(driver, lambda d: "Turn cancelled" in text_of(d, "#log"), message="the cancelled turn")
    assert "CANCELLED" in text_of(driver, "#log details.tool")


def test_resume_after_dropped_connections(inspect_system, driver):
    sign_in(driver, inspect_system, inspect_system.token)
    session = start_session(
        driver, "scripted:demo",
        "The test test_average_of_nothing_is_zero fails. Make average([]) return 0 and push the fix.")
    # Cut the stream again and again while the turn runs.
    deadline = time.monotonic() + TIMEOUT_S
    while "Turn succeeded" not in text_of(driver, "#log") and time.monotonic() < deadline:
        driver.execute_script("window.inspectSession && window.inspectSession.dropConnection()")
        time.sleep(0.15)
    wait(driver, lambda d: "Turn succeeded" in text_of(d, "#log"), message="the turn's end")
    # The pushed fix shows as the session's diff.
    wait(driver, lambda d: "1 file, +2 −0 against main" in text_of(d, "#diff-summary"), message="the diff's summary")
    driver.execute_script("document.getElementById('diff').open = true")
    assert "calc.py" in text_of(driver, "#diff-files")
    added = driver.execute_script(
        "return [...document.querySelectorAll('#diff-patch .add')].map((n) => n.textContent).join('')")
    assert "+    if not numbers:" in added and "+        return 0" in added
    reconnects = driver.execute_script("return window.inspectSession.view.reconnects")
    assert reconnects >= 1
    seen = driver.execute_script("return window.inspectSession.view.lastSeq")
    last = requests.get(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session}"),
        headers={"Authorization": f"Bearer {inspect_system.token}"}, timeout=TIMEOUT_S).json()["session"]["lastSeq"]
    wait(driver, lambda d: int(d.execute_script("return window.inspectSession.view.lastSeq")) >= int(last),
         message=f"every event shown (at {seen}, last {last})")
    dropped_view = text_of(driver, "#log")

    # A fresh page, never cut, shows exactly the same lines.
    fresh = browser()
    try:
        sign_in(fresh, inspect_system, inspect_system.token, f"/sessions/{session}")
        wait(fresh, lambda d: "Turn succeeded" in text_of(d, "#log"), message="the fresh view")
        wait(fresh, lambda d: int(d.execute_script("return window.inspectSession.view.lastSeq")) >= int(last))
        # Both views, compared up to the same event (a later presence event is not in the log).
        assert text_of(fresh, "#log") == dropped_view
    finally:
        fresh.quit()


def test_two_people_in_one_session(inspect_system, driver):
    bob_id, bob_token = new_user(inspect_system, "Bob Web")
    model = write_transcript(inspect_system, "web-chat", [{"text": "Noted."}] * 6)
    headers = {"Authorization": f"Bearer {inspect_system.token}"}
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=headers,
        json={"repository": "local/demo", "model": model, "client": "web"}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session = created.json()["session"]["id"]
    added = requests.post(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session}/participants"), headers=headers,
        json={"userId": bob_id, "role": "ROLE_COLLABORATOR"}, timeout=TIMEOUT_S)
    assert added.status_code == 200, added.text

    sign_in(driver, inspect_system, inspect_system.token, f"/sessions/{session}")
    bob = browser()
    try:
        sign_in(bob, inspect_system, bob_token, f"/sessions/{session}")
        wait(bob, lambda d: text_of(d, "#connection") == "live", message="Bob's live view")
        wait(driver, lambda d: text_of(d, "#connection") == "live", message="the developer's live view")
        bob.find_element(By.ID, "prompt").send_keys("Hello from Bob")
        bob.find_element(By.ID, "send").click()
        wait(driver, lambda d: "Hello from Bob" in text_of(d, "#log"), message="Bob's prompt in the other view")
        who = driver.execute_script(
            "return [...document.querySelectorAll('#log .msg.prompt')].map(n => n.textContent)")
        assert any(line.startswith("Bob Web") and "Hello from Bob" in line for line in who), who
        driver.find_element(By.ID, "prompt").send_keys("Hello from the developer")
        driver.find_element(By.ID, "send").click()
        wait(bob, lambda d: "Hello from the developer" in text_of(d, "#log"), message="the reply in Bob's view")
        wait(bob, lambda d: "Bob Web" in text_of(d, "#participants"), message="the participants")
    finally:
        bob.quit()


def test_approve_and_deny_tool_calls(inspect_system, driver):
    # The session's rules ask a person before any command; the first is approved, the second denied.
    model = write_transcript(inspect_system, "web-approve", [
        {"text": "I need to run a command.",
         "tool_calls": [{"name": "run_command", "arguments": {"command": "echo approved-and-ran"}}]},
        {"expect": "approved-and-ran", "text": "It ran. One more.",
         "tool_calls": [{"name": "run_command", "arguments": {"command": "echo never-runs"}}]},
        {"expect": "was denied by", "text": "Understood, I will not run it."},
    ])
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers={"Authorization": f"Bearer {inspect_system.token}"},
        json={"repository": "local/demo", "model": model, "client": "web", "prompt": "Run your commands",
              "permissionRules": [{"tool": "run_command", "decision": "PERMISSION_DECISION_ASK",
                                   "reason": "commands need a person"}]},
        timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session = created.json()["session"]["id"]
    sign_in(driver, inspect_system, inspect_system.token, f"/sessions/{session}")

    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log details.tool button.approve")) == 1,
         message="an Approve button on the waiting call")
    assert "AWAITING APPROVAL" in text_of(driver, "#log details.tool")
    shot(driver, "tool-call-approval")
    driver.find_element(By.CSS_SELECTOR, "#log details.tool button.approve").click()
    wait(driver, lambda d: "It ran. One more." in text_of(d, "#log"), message="the approved call's result")

    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log details.tool button.deny")) == 1,
         message="a Deny button on the second call")
    driver.find_element(By.CSS_SELECTOR, "#log details.tool button.deny").click()
    wait(driver, lambda d: "Understood, I will not run it." in text_of(d, "#log"), message="the model told of the denial")
    wait(driver, lambda d: "Turn succeeded" in text_of(d, "#log"), message="the turn's end")
    states = driver.execute_script(
        "return [...document.querySelectorAll('#log details.tool .tool-state')].map((n) => n.textContent)")
    assert states == ["SUCCEEDED", "FAILED"], states
    assert not driver.find_elements(By.CSS_SELECTOR, "#log details.tool button.approve, #log details.tool button.deny")


def test_phone_width_and_stats(inspect_system):
    model = write_transcript(inspect_system, "web-phone", [{"text": "A reply with a rather long unbroken word: " + "x" * 80}])
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers={"Authorization": f"Bearer {inspect_system.token}"},
        json={"repository": "local/demo", "model": model, "prompt": "Say something", "client": "web"},
        timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    phone = browser(390, 844)
    try:
        # A phone's viewport (headless windows are at least 500 px wide).
        phone.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        sign_in(phone, inspect_system, inspect_system.token)
        wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr"), message="the session list")
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(phone, "sessions-phone")
        phone.find_element(By.CSS_SELECTOR, f"tr[data-session='{created.json()['session']['id']}'] a").click()
        wait(phone, lambda d: text_of(d, "#connection") == "live", message="a live session view")
        wait(phone, lambda d: "rather long" in text_of(d, "#log"), message="the reply")
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(phone, "session-phone")
        phone.get(inspect_system.http_url("Gateway", "/stats"))
        wait(phone, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-stat='sessions'] b"), message="the stats")
        assert int(text_of(phone, "[data-stat='sessions'] b")) >= 1
        shot(phone, "stats-phone")
    finally:
        phone.quit()


def test_bad_token_asks_to_sign_in(inspect_system, driver):
    sign_in(driver, inspect_system, "insp_not_a_real_token")
    wait(driver, lambda d: d.find_elements(By.ID, "login-form"), message="the sign-in form")
    # The page itself sends nothing but same-origin requests (its policy says so).
    policy = requests.get(inspect_system.http_url("Gateway", "/"), timeout=TIMEOUT_S).headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
