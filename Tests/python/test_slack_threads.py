"""Slack with `INSPECT_SLACK_REQUIRE_MENTION=false`: every message of a session's thread is a
follow-up, direct messages start sessions, chatter from people Inspect does not know is passed
over quietly; and SessionService killed in the middle of a Slack run: the run is reported to its
end in the same progress message after a restart, and an event Slack retries while the service
is down is acted on once."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from conftest import restart_session_service, start_inspect
from slack_stand_in import SlackStandIn
from test_admin_cli import cli
from test_slack import (BOT, CATALOG, SECRET, TIMEOUT_S, TOKEN, button, final_message, mention, post_event,
                        posts_in_thread, write_slow_demo)

WORKING = "Working on it…"


@pytest.fixture(scope="module")
def slack():
    stand_in = SlackStandIn(TOKEN, bot_user=BOT).start()
    stand_in.add_user("UADA", "ada@example.com", "ada")
    stand_in.add_user("USTRANGER", "stranger@elsewhere.example", "stranger")
    stand_in.add_channel("CDEMO", "inspect-demo")
    stand_in.add_channel("DADA", "")
    yield stand_in
    stand_in.stop()


def slack_environment(system_catalog: str, slack: SlackStandIn) -> dict[str, str]:
    return {
        "INSPECT_SLACK_SIGNING_SECRET": SECRET,
        "INSPECT_SLACK_BOT_TOKEN": TOKEN,
        "INSPECT_SLACK_API_URL": slack.base_url,
        "INSPECT_SLACK_MODEL": "scripted:slack",
        "INSPECT_SLACK_REQUIRE_MENTION": "false",
        "INSPECT_SLACK_PROGRESS_TICK_MS": "1000",
        "INSPECT_CLASSIFIER_CATALOG": system_catalog,
    }


@pytest.fixture(scope="module")
def system(tmp_path_factory, slack):
    catalog = tmp_path_factory.mktemp("slack-catalog") / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    env = slack_environment(str(catalog), slack)
    with start_inspect(tmp_path_factory, env) as running:
        running.slack_env = env
        write_slow_demo(running.data_dir, seconds=6)
        added = cli(running, "admin", "users", "add", "Ada Lovelace", "--email", "ada@example.com")
        assert added.returncode == 0, added.stderr
        yield running


def message_event(message: dict, channel: str, channel_type: str = "channel") -> dict:
    event = {"type": "message", "user": message["user"], "text": message["text"], "ts": message["ts"],
             "channel": channel, "channel_type": channel_type, "event_ts": message["ts"]}
    if "thread_ts" in message:
        event["thread_ts"] = message["thread_ts"]
    return event


def progress_posts(slack, channel, thread):
    return [c for c in posts_in_thread(slack.calls, channel, thread) if c.body["text"] == WORKING]


def test_follow_ups_without_a_mention(system, slack):
    event = mention(slack, "CDEMO", "UADA", "make average([]) in calc.py return 0")
    thread = event["ts"]
    assert post_event(system, event, "Ev1000START").json()["accepted"] is True
    final_message(slack, "CDEMO", thread, (":white_check_mark:",))

    # In the thread, a plain message from Ada is a follow-up (the script has no third act: it
    # fails in the model); one from someone Inspect does not know is passed over without a word.
    before = len(posts_in_thread(slack.calls, "CDEMO", thread))
    chatter = slack.say("CDEMO", "USTRANGER", "+1", thread)
    assert post_event(system, message_event(chatter, "CDEMO"), "Ev1001CHAT").json()["accepted"] is True
    follow = slack.say("CDEMO", "UADA", "and add a docstring", thread)
    assert post_event(system, message_event(follow, "CDEMO"), "Ev1002FOLLOW").json()["accepted"] is True
    failed = final_message(slack, "CDEMO", thread, (":x:",), after=before)
    assert failed.body["text"].startswith(":x: Failed in the model")
    later = posts_in_thread(slack.calls, "CDEMO", thread)[before:]
    assert not [c for c in later if "USTRANGER" in c.body["text"]], "nobody answered the stranger's chatter"
    assert len([c for c in later if c.body["text"] == WORKING]) == 1

    # A channel message outside any thread is not kept, let alone acted on.
    loose = slack.say("CDEMO", "UADA", "lunch?")
    answer = post_event(system, message_event(loose, "CDEMO"), "Ev1003LOOSE")
    assert answer.json() == {"duplicate": False, "accepted": False}


def test_the_elapsed_time_moves_while_a_step_is_silent(system, slack):
    """The scripted turn's first command sleeps 6 s, sending no event. With
    `INSPECT_SLACK_PROGRESS_TICK_MS=1000` the progress message shows that step again and again
    with a growing elapsed time (at Slack's pace), not only when an event comes."""
    event = mention(slack, "CDEMO", "UADA", "make average([]) in calc.py return 0")
    thread = event["ts"]
    assert post_event(system, event, "Ev1050TICK").json()["accepted"] is True
    progress = slack.wait_for(lambda calls: next(iter(progress_posts(slack, "CDEMO", thread)), None),
                              what="the progress message")
    final_message(slack, "CDEMO", thread, (":white_check_mark:",))
    # The progress texts of the silent step ("Working: Running `run_command` · 1 tool call · 3 s").
    elapsed = [
        int(call.body["text"].rpartition(" · ")[2].removesuffix(" s")) for call in slack.calls
        if call.method == "chat.update" and call.body.get("ts") == progress.answer["ts"] and call.status == 200
        and call.body.get("text", "").startswith("Working: Running `run_command` · 1 tool call · ")
        and " min " not in call.body["text"]]
    # One event starts the step and the next ends it; without the tick the step is shown once.
    assert len(set(elapsed)) >= 3, f"the silent step's elapsed time did not move on its own: {elapsed}"
    assert elapsed == sorted(elapsed), elapsed


def test_a_direct_message_starts_a_session(system, slack):
    # No mention is needed in a direct conversation; local/demo is named by its link.
    dm = slack.say("DADA", "UADA", "https://github.com/local/demo: make average([]) return 0 in calc.py")
    assert post_event(system, message_event(dm, "DADA", "im"), "Ev1100DM").json()["accepted"] is True
    done = final_message(slack, "DADA", dm["ts"], (":white_check_mark:",))
    assert "Pushed `inspect/ses-" in done.body["text"]


def test_a_run_survives_a_session_service_restart(system, slack):
    event = mention(slack, "CDEMO", "UADA", "make average([]) in calc.py return 0")
    thread = event["ts"]
    assert post_event(system, event, "Ev2000RESTART").json()["accepted"] is True
    progress = slack.wait_for(lambda calls: next(iter(progress_posts(slack, "CDEMO", thread)), None),
                              what="the progress message")
    progress_ts = progress.answer["ts"]
    session_id = button(progress.body["blocks"], "inspect_stop")["value"]
    time.sleep(1.5)  # into the 6 s command

    session_pid = next(p["pid"] for p in system.up_state["processes"] if p["service"] == "SessionService")
    os.kill(session_pid, signal.SIGKILL)
    time.sleep(0.3)
    # Slack's request while SessionService is down is refused (Slack tries again later).
    later = mention(slack, "CDEMO", "UADA", "also add a docstring to average", thread)
    down = post_event(system, later, "Ev2001LATER")
    assert down.status_code == 503 and down.json()["error"]["code"] == "UNAVAILABLE"

    restarted = restart_session_service(system, system.slack_env)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            retried = post_event(system, later, "Ev2001LATER", retry=1)
            if retried.status_code == 200:
                break
            assert time.monotonic() < deadline, "the Gateway did not recover after SessionService restarted"
            time.sleep(0.2)
        assert retried.json() == {"duplicate": False, "accepted": True}

        # The interrupted turn ends FAILED in the same progress message, then the retried
        # follow-up runs (and fails in the model: the script has no third act).
        interrupted = final_message(slack, "CDEMO", thread, (":x:",))
        assert "SessionService stopped while this turn was running" in interrupted.body["text"]
        message = slack.message("CDEMO", progress_ts)
        assert ":x: *Failed*" in json.dumps(message["blocks"]), message
        after = posts_in_thread(slack.calls, "CDEMO", thread).index(interrupted) + 1
        slack.wait_for(lambda calls: len(progress_posts(slack, "CDEMO", thread)) == 2 or None,
                       what="the follow-up's progress message")
        final_message(slack, "CDEMO", thread, (":x:", ":white_check_mark:"), after=after)
        finals = [c for c in posts_in_thread(slack.calls, "CDEMO", thread)
                  if c.body["text"].startswith((":x:", ":white_check_mark:"))]
        assert len(finals) == 2, "each turn reported once"
        assert len(progress_posts(slack, "CDEMO", thread)) == 2
        assert button(progress_posts(slack, "CDEMO", thread)[1].body["blocks"], "inspect_stop")["value"] == session_id
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)
