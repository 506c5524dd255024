"""Slack end to end: signed Events API and interactivity requests into the Gateway of a running
Inspect (`inspect up`), and everything Inspect says back through Slack's Web API, recorded by a
stand-in on 127.0.0.1 (`slack_stand_in.py`).

Signatures are made and checked with the PyPI `slack_sdk` (an implementation independent of
Inspect's), and the Gateway must agree with it on every case."""
from __future__ import annotations

import json
import time
import urllib.parse

import grpc
import pytest
import requests
from slack_sdk.signature import SignatureVerifier

from conftest import REPO_ROOT, start_inspect
from slack_stand_in import SlackStandIn
from test_admin_cli import cli
from test_sse import auth, read_frames

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
TEAM = "T0001"
TIMEOUT_S = 30
BOT = "UBOT"

CATALOG = {
    "repos": [
        {
            "name": "local/demo",
            "description": "A small Python project: a calculator module with unit tests, run with python3 -m unittest.",
            "hints": ["calculator", "calc.py", "average", "unit tests"],
            "aliases": ["demo repo"],
            "channels": ["#inspect-demo"],
        },
        {
            "name": "acme/calc-web",
            "description": "The calculator's web page: buttons, the display and the average widget.",
            "hints": ["calculator", "average", "display"],
            "aliases": ["calculator web"],
            "channels": ["#calc-web"],
        },
        {
            "name": "acme/payments-api",
            "description": "Go service that charges cards, issues refunds and sends invoices through Stripe.",
            "hints": ["stripe", "refund", "invoice"],
            "aliases": ["payments"],
            "channels": ["#payments"],
        },
    ]
}


@pytest.fixture(scope="module")
def slack():
    stand_in = SlackStandIn(TOKEN, bot_user=BOT).start()
    stand_in.add_user("UADA", "ada@example.com", "ada")
    stand_in.add_user("USTRANGER", "stranger@elsewhere.example", "stranger")
    # Another organisation's user in a shared channel, whose profile claims Ada's email.
    stand_in.add_user("UGUEST", "ada@example.com", "not ada", team="T0OTHER")
    stand_in.add_channel("CDEMO", "inspect-demo")
    stand_in.add_channel("CRANDOM", "random")
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def system(tmp_path_factory, slack):
    catalog = tmp_path_factory.mktemp("slack-catalog") / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    env = {
        "INSPECT_SLACK_SIGNING_SECRET": SECRET,
        "INSPECT_SLACK_BOT_TOKEN": TOKEN,
        "INSPECT_SLACK_API_URL": slack.base_url,
        "INSPECT_SLACK_MODEL": "scripted:slack",
        "INSPECT_CLASSIFIER_CATALOG": str(catalog),
    }
    with start_inspect(tmp_path_factory, env) as running:
        write_slow_demo(running.data_dir, seconds=3)
        # Ada is an Inspect user under the email of her Slack profile.
        added = cli(running, "admin", "users", "add", "Ada Lovelace", "--email", "ada@example.com")
        assert added.returncode == 0, added.stderr
        yield running


def write_slow_demo(data_dir, seconds: int) -> None:
    """`scripted:slack`: the demo's turn with its first command made slower by `seconds`, so
    that a Stop (or a kill) can land while it runs."""
    lines = (REPO_ROOT / "examples" / "demo.transcript.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    command = first["tool_calls"][0]["arguments"]["command"]
    first["tool_calls"][0]["arguments"]["command"] = f"sleep {seconds}; {command}"
    lines[0] = json.dumps(first)
    (data_dir / "transcripts" / "slack.transcript.jsonl").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# Requests as Slack sends them
# ----------------------------------------------------------------------------------------------


def signed(body: bytes, timestamp: str | None = None, secret: str = SECRET) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def post_event(system, event: dict, event_id: str, retry: int | None = None) -> requests.Response:
    envelope = {
        "token": "legacy-verification-token", "team_id": TEAM, "api_app_id": "A0001", "type": "event_callback",
        "event": event, "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT, "is_bot": True}],
    }
    body = json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json", **signed(body)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return requests.post(system.http_url("Gateway", "/slack/events"), data=body, headers=headers, timeout=TIMEOUT_S)


def mention(slack, channel: str, user: str, text: str, thread_ts: str | None = None) -> dict:
    """A person mentions the app: the message as Slack keeps it, and its app_mention event."""
    message = slack.say(channel, user, f"<@{BOT}> {text}", thread_ts)
    event = {"type": "app_mention", "user": user, "text": message["text"], "ts": message["ts"],
             "channel": channel, "event_ts": message["ts"]}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def post_action(system, user: str, channel: str, message_ts: str, action_id: str, value: str,
                thread_ts: str | None = None) -> requests.Response:
    payload = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A0001",
        "trigger_id": f"trig-{time.monotonic_ns()}",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel}, "message": {"ts": message_ts, "thread_ts": thread_ts},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                     "action_ts": str(time.time())}],
        "response_url": "http://127.0.0.1:9/never-called",
    }
    body = ("payload=" + urllib.parse.quote_plus(json.dumps(payload))).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    return requests.post(
        system.http_url("Gateway", "/slack/interactions"), data=body, headers=headers, timeout=TIMEOUT_S)


def posts_in_thread(calls, channel: str, thread: str):
    return [c for c in calls if c.method == "chat.postMessage" and c.body.get("channel") == channel
            and c.body.get("thread_ts") == thread and c.status == 200 and c.answer.get("ok")]


def wait_for_post(slack, channel: str, thread: str, test, what: str, after: int = 0):
    """The first message posted in the thread (after its first `after` ones) whose text passes
    `test`, waited for."""
    return slack.wait_for(
        lambda calls: next((c for c in posts_in_thread(calls, channel, thread)[after:] if test(c.body["text"])), None),
        what=what)


def button(blocks: list[dict], action_id: str) -> dict | None:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return element
    return None


def final_message(slack, channel: str, thread: str, starts: tuple[str, ...], after: int = 0):
    return wait_for_post(slack, channel, thread, lambda text: text.startswith(starts),
                         f"a message starting {starts} in thread {thread}", after)


# ----------------------------------------------------------------------------------------------
# Signatures
# ----------------------------------------------------------------------------------------------


def test_signatures_agree_with_slack_sdk(system):
    """The Gateway accepts exactly what slack_sdk's SignatureVerifier accepts."""
    verifier = SignatureVerifier(SECRET)
    url = system.http_url("Gateway", "/slack/events")
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "token": "x"}).encode()
    now = str(int(time.time()))
    good = signed(body, now)
    cases = {
        "valid": (body, good),
        "another secret": (body, signed(body, now, secret="not-the-secret")),
        "body changed after signing": (body.replace(b"3eZ", b"4eZ"), good),
        "timestamp changed after signing": (body, {**good, "X-Slack-Request-Timestamp": str(int(now) - 1)}),
        "stale (301 s old)": (body, signed(body, str(int(now) - 301))),
        "from the future (301 s ahead)": (body, signed(body, str(int(now) + 301))),
        "just within the window (250 s old)": (body, signed(body, str(int(now) - 250))),
        "signature not hex": (body, {**good, "X-Slack-Signature": "v0=zz" + good["X-Slack-Signature"][5:]}),
        "wrong version": (body, {**good, "X-Slack-Signature": good["X-Slack-Signature"].replace("v0=", "v1=")}),
        "signature cut short": (body, {**good, "X-Slack-Signature": good["X-Slack-Signature"][:-2]}),
    }
    for name, (sent, headers) in cases.items():
        expected = verifier.is_valid(sent, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
        answer = requests.post(url, data=sent, headers={"Content-Type": "application/json", **headers},
                               timeout=TIMEOUT_S)
        assert (answer.status_code == 200) == expected, f"{name}: slack_sdk says {expected}, Gateway {answer.status_code}"
        if expected:
            assert json.loads(sent)["challenge"] == answer.json()["challenge"], name
        else:
            assert answer.status_code == 401, f"{name}: {answer.status_code} {answer.text}"
            assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
    stale = requests.post(url, data=body, headers={"Content-Type": "application/json",
                                                   **signed(body, str(int(now) - 400))}, timeout=TIMEOUT_S)
    assert "within 300 s" in stale.json()["error"]["message"]
    unsigned = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT_S)
    assert unsigned.status_code == 401 and "X-Slack-Request-Timestamp" in unsigned.json()["error"]["message"]


def test_bad_requests_are_refused_and_the_gateway_stays_up(system):
    events = system.http_url("Gateway", "/slack/events")
    interactions = system.http_url("Gateway", "/slack/interactions")
    for body, fragment in [(b"{not json", "not a JSON object"), (b'{"type":"event_callback","event":{}}', "event_id")]:
        answer = requests.post(events, data=body, headers=signed(body), timeout=TIMEOUT_S)
        assert answer.status_code == 400 and fragment in answer.json()["error"]["message"], answer.text
    # A type Inspect does not act on is taken (Slack counts other answers against the app).
    body = b'{"type":"app_rate_limited","team_id":"T0001","minute_rate_limited":1518467820}'
    taken = requests.post(events, data=body, headers=signed(body), timeout=TIMEOUT_S)
    assert taken.status_code == 200 and taken.json() == {"duplicate": False, "accepted": False}
    big = b'{"type":"event_callback","pad":"' + b"x" * (1 << 20) + b'"}'
    assert requests.post(events, data=big, headers=signed(big), timeout=TIMEOUT_S).status_code == 413
    for body in [b"nopayload=1", b"payload=%7Bnot-json"]:
        answer = requests.post(interactions, data=body, headers=signed(body), timeout=TIMEOUT_S)
        assert answer.status_code == 400, answer.text
    assert requests.get(system.http_url("Gateway", "/readyz"), timeout=TIMEOUT_S).status_code == 200


# ----------------------------------------------------------------------------------------------
# A mention in a channel the catalog knows
# ----------------------------------------------------------------------------------------------


def test_mention_runs_a_session_and_reports_it_in_the_thread(system, slack):
    event = mention(slack, "CDEMO", "UADA",
                    "test_average_of_nothing_is_zero fails: make average([]) in calc.py return 0 and push the fix")
    thread = event["ts"]
    # The first progress update is rate-limited: it must wait out the Retry-After.
    slack.script("chat.update", ("429", 2))
    first = post_event(system, event, "Ev0001MENTION")
    assert first.status_code == 200 and first.json() == {"duplicate": False, "accepted": True}, first.text
    # Slack's retries (it did not see the answer in time) never start a second run.
    for retry in (1, 2):
        again = post_event(system, event, "Ev0001MENTION", retry=retry)
        assert again.status_code == 200 and again.json()["duplicate"] is True

    done = final_message(slack, "CDEMO", thread, (":white_check_mark:",))
    text = done.body["text"]
    assert "Pushed `inspect/ses-" in text, text
    assert "average([]) now returns 0" in text, text

    calls = slack.calls
    assert all(c.authorization == f"Bearer {TOKEN}" for c in calls)
    progress = [c for c in posts_in_thread(calls, "CDEMO", thread) if c.body["text"] == "Working on it…"]
    assert len(progress) == 1, "one run, one progress message"
    progress_ts = progress[0].answer["ts"]
    stop = button(progress[0].body["blocks"], "inspect_stop")
    session_id = stop["value"]
    assert session_id.startswith("ses-") and stop["style"] == "danger"
    opener = button(progress[0].body["blocks"], "inspect_open")
    assert opener["url"].endswith(f"/sessions/{session_id}")

    # The progress message was updated in place, and ends saying how the turn went.
    updates = [c for c in calls if c.method == "chat.update" and c.body.get("ts") == progress_ts]
    assert updates and updates[0].status == 429
    assert any(c.status == 200 for c in updates)
    final = slack.message("CDEMO", progress_ts)
    assert ":white_check_mark: *Done*" in json.dumps(final["blocks"]) and button(final["blocks"], "inspect_stop") is None
    assert "tool calls" in json.dumps(final["blocks"])
    # At Slack's pace: calls writing to the channel at least ~1 s apart, and nothing within the
    # 2 s the 429 asked for.
    writes = [c for c in calls if c.method in ("chat.postMessage", "chat.update") and c.body.get("channel") == "CDEMO"]
    for earlier, later in zip(writes, writes[1:]):
        assert later.at - earlier.at >= 0.9, f"{earlier.method} then {later.method} {later.at - earlier.at:.2f} s apart"
    limited = updates[0]
    after = next(c for c in writes if c.at > limited.at)
    assert after.at - limited.at >= 1.9

    # The session is Ada's, started from Slack in the catalog's repository for #inspect-demo.
    session = requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}"), headers=auth(system.token),
                           timeout=TIMEOUT_S).json()["session"]
    assert session["repository"]["fullName"] == "local/demo" and session["client"] == "slack"
    assert session["externalKey"] == f"slack:{TEAM}:CDEMO:{thread}"
    with requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}/events"), headers=auth(system.token),
                      stream=True, timeout=TIMEOUT_S) as events:
        frames = read_frames(events, 50, until="prompt_queued")
    queued = [json.loads(frame["data"]) for frame in frames if frame["event"] == "prompt_queued"]
    assert queued and queued[0]["promptQueued"]["author"]["displayName"] == "Ada Lovelace"
    assert queued[0]["promptQueued"]["text"].startswith("test_average_of_nothing_is_zero fails")

    # A later mention in the thread is a follow-up of the same session; the script has no third
    # act, so that turn fails in the model, and the thread says so.
    before = len(posts_in_thread(slack.calls, "CDEMO", thread))
    chatter = slack.say("CDEMO", "UADA", "nice, thanks", thread)
    ignored = post_event(system, {"type": "message", "user": "UADA", "text": chatter["text"], "ts": chatter["ts"],
                                  "thread_ts": thread, "channel": "CDEMO", "channel_type": "channel"}, "Ev0002CHAT")
    assert ignored.json()["accepted"] is True
    follow_up = mention(slack, "CDEMO", "UADA", "also add a docstring to average", thread)
    assert post_event(system, follow_up, "Ev0003FOLLOW").json()["accepted"] is True
    failed = final_message(slack, "CDEMO", thread, (":x:",), after=before)
    assert failed.body["text"].startswith(":x: Failed in the model"), failed.body["text"]
    later = [c for c in posts_in_thread(slack.calls, "CDEMO", thread)[before:] if c.body["text"] == "Working on it…"]
    assert len(later) == 1, "the follow-up ran once; the plain message was not a prompt"
    assert button(later[0].body["blocks"], "inspect_stop")["value"] == session_id


def test_bots_are_never_answered(system, slack):
    before = len(slack.calls)
    for event, event_id in [
        ({"type": "message", "subtype": "bot_message", "bot_id": "BOTHER", "text": f"<@{BOT}> hi", "ts": "1.1",
          "channel": "CDEMO"}, "Ev0100BOT"),
        ({"type": "app_mention", "bot_id": "BOTHER", "user": "UOTHERBOT", "text": f"<@{BOT}> fix it", "ts": "1.2",
          "channel": "CDEMO"}, "Ev0101BOT"),
    ]:
        answer = post_event(system, event, event_id)
        assert answer.status_code == 200 and answer.json() == {"duplicate": False, "accepted": False}
    time.sleep(1.5)
    assert len(slack.calls) == before, "nothing was said to a bot"


@pytest.mark.parametrize("user", ["USTRANGER", "UGUEST"])
def test_someone_inspect_does_not_know_is_told(system, slack, user):
    """No Inspect user has the email, or the account belongs to another workspace (a shared
    channel's guest whose profile claims a member's email)."""
    event = mention(slack, "CDEMO", user, "fix average in calc.py")
    assert post_event(system, event, f"Ev0200{user}").json()["accepted"] is True
    told = final_message(slack, "CDEMO", event["ts"], (f"<@{user}> is not an Inspect user",))
    assert "inspect admin users add" in told.body["text"]
    assert not [c for c in posts_in_thread(slack.calls, "CDEMO", event["ts"]) if c.body["text"] == "Working on it…"]


def test_a_failure_is_said_in_the_thread(system, slack):
    """Slack refusing a lookup is not retried for ever in silence: the thread hears why."""
    slack.script("users.info", ("error", "account_inactive"))
    event = mention(slack, "CDEMO", "UADA", "fix average in calc.py")
    assert post_event(system, event, "Ev0300FAIL").json()["accepted"] is True
    told = final_message(slack, "CDEMO", event["ts"], (":x: Inspect could not act on this",))
    assert "users.info" in told.body["text"] and "account_inactive" in told.body["text"]


# ----------------------------------------------------------------------------------------------
# Buttons
# ----------------------------------------------------------------------------------------------


def test_ambiguous_repository_is_asked_with_buttons_and_the_choice_is_recorded(system, slack, proto_stubs):
    event = mention(slack, "CRANDOM", "UADA", "the calculator average is wrong for an empty list")
    thread = event["ts"]
    assert post_event(system, event, "Ev0400ASK").json()["accepted"] is True
    question = wait_for_post(slack, "CRANDOM", thread, lambda text: text.startswith("Which repository"),
                             "the question")
    choices = {button(question.body["blocks"], f"inspect_repo_{i}")["value"] for i in range(2)}
    assert choices == {"local/demo", "acme/calc-web"}
    question_ts = question.answer["ts"]
    chosen = next(f"inspect_repo_{i}" for i in range(2)
                  if button(question.body["blocks"], f"inspect_repo_{i}")["value"] == "local/demo")
    # A second mention before anyone chose starts nothing.
    again = mention(slack, "CRANDOM", "UADA", "any news?", thread)
    assert post_event(system, again, "Ev0401AGAIN").json()["accepted"] is True

    clicked = post_action(system, "UADA", "CRANDOM", question_ts, chosen, "local/demo", thread)
    assert clicked.status_code == 200 and clicked.json()["accepted"] is True, clicked.text
    final_message(slack, "CRANDOM", thread, (":white_check_mark:",))
    updated = slack.message("CRANDOM", question_ts)
    assert updated["text"] == "Working in local/demo, chosen by <@UADA>."
    progress = [c for c in posts_in_thread(slack.calls, "CRANDOM", thread) if c.body["text"] == "Working on it…"]
    assert len(progress) == 1
    # A late second click starts nothing more.
    assert post_action(system, "UADA", "CRANDOM", question_ts, chosen, "local/demo", thread).status_code == 200
    time.sleep(1.5)
    assert len([c for c in posts_in_thread(slack.calls, "CRANDOM", thread) if c.body["text"] == "Working on it…"]) == 1

    # The choice was recorded: #random now leans to local/demo for such messages.
    classifier = proto_stubs.load("classifier.v1.classifier_service_pb2")
    grpc_module = proto_stubs.load("classifier.v1.classifier_service_pb2_grpc")
    with grpc.insecure_channel(system.grpc_target("RepoClassifier")) as channel:
        stub = grpc_module.RepoClassifierServiceStub(channel)
        ranking = stub.Classify(classifier.ClassifyRequest(text="the calculator average is wrong", channel="#random"),
                                timeout=TIMEOUT_S)
    assert ranking.candidates[0].repo == "local/demo", ranking


def test_a_repository_not_in_the_catalog_is_said_so_and_nothing_starts(system, slack, proto_stubs):
    # The words point at the calculator, but the person named an acme repository Inspect lacks.
    event = mention(slack, "CRANDOM", "UADA", "the calculator average on acme/landing-page is wrong")
    thread = event["ts"]
    assert post_event(system, event, "Ev0450UNKNOWN").json()["accepted"] is True
    said = wait_for_post(slack, "CRANDOM", thread, lambda text: "not in my catalog" in text, "the answer")
    assert said.body["text"].startswith("`acme/landing-page` is not in my catalog, so I can't work there"), said.body
    assert "If you meant one of these, choose it" in said.body["text"]
    # The candidates are still offered, with why they are not taken first in their reasons.
    assert button(said.body["blocks"], "inspect_repo_0")["value"] in {"local/demo", "acme/calc-web"}
    assert "names acme/landing-page, not in the catalog" in json.dumps(said.body["blocks"])
    time.sleep(1.0)
    assert not [c for c in posts_in_thread(slack.calls, "CRANDOM", thread) if c.body["text"] == "Working on it…"]

    # Over gRPC: NONE, and the name it did not know.
    classifier = proto_stubs.load("classifier.v1.classifier_service_pb2")
    grpc_module = proto_stubs.load("classifier.v1.classifier_service_pb2_grpc")
    with grpc.insecure_channel(system.grpc_target("RepoClassifier")) as channel:
        stub = grpc_module.RepoClassifierServiceStub(channel)
        ranking = stub.Classify(classifier.ClassifyRequest(
            text="the calculator average on acme/landing-page is wrong", channel="#random"), timeout=TIMEOUT_S)
    assert ranking.decision == proto_stubs.load("classifier.v1.classifier_pb2").DECISION_NONE, ranking
    assert list(ranking.unknown_repos) == ["acme/landing-page"]


def test_stop_button_stops_the_turn_and_the_thread_is_the_context(system, slack):
    # A thread with more earlier messages than one page of conversations.replies.
    root = slack.say("CDEMO", "USTRANGER", "average([]) raises ZeroDivisionError in prod")
    thread = root["ts"]
    for n in range(6):
        slack.say("CDEMO", "USTRANGER", f"still broken {n}", thread)
    event = mention(slack, "CDEMO", "UADA", "make average([]) in calc.py return 0", thread)
    slack.say("CDEMO", "USTRANGER", "said after the mention", thread)
    assert post_event(system, event, "Ev0500STOP").json()["accepted"] is True
    progress = slack.wait_for(
        lambda calls: next((c for c in posts_in_thread(calls, "CDEMO", thread) if c.body["text"] == "Working on it…"),
                           None), what="the progress message")
    session_id = button(progress.body["blocks"], "inspect_stop")["value"]
    # Someone Inspect does not know cannot stop it.
    assert post_action(system, "USTRANGER", "CDEMO", progress.answer["ts"], "inspect_stop", session_id,
                       thread).status_code == 200
    assert post_action(system, "UADA", "CDEMO", progress.answer["ts"], "inspect_stop", session_id,
                       thread).status_code == 200
    stopped = final_message(slack, "CDEMO", thread, (":black_square_for_stop:",))
    assert "stopped from Slack by Ada Lovelace" in stopped.body["text"]
    refused = [c for c in posts_in_thread(slack.calls, "CDEMO", thread) if "USTRANGER" in c.body["text"]]
    assert refused and "not an Inspect user" in refused[0].body["text"]

    # The prompt is the request, then the thread's earlier messages (every page, oldest first;
    # nothing said after it, no bot's message).
    with requests.get(system.http_url("Gateway", f"/v1/sessions/{session_id}/events"), headers=auth(system.token),
                      stream=True, timeout=TIMEOUT_S) as events:
        frames = read_frames(events, 50, until="prompt_queued")
    prompt = json.loads(frames[-1]["data"])["promptQueued"]["text"]
    assert prompt.startswith("make average([]) in calc.py return 0\n\nEarlier in the Slack thread (oldest first):\n")
    assert "> <@USTRANGER>: average([]) raises ZeroDivisionError in prod\n" in prompt
    assert prompt.endswith("> <@USTRANGER>: still broken 5"), prompt
    assert "said after the mention" not in prompt and "Working on it" not in prompt
    replies = slack.calls_of("conversations.replies", channel="CDEMO", ts=thread)
    assert len(replies) >= 3, "every page was read"
