"""SessionService killed in the middle of a run: the Gateway answers 503 naming it; after a
restart every acknowledged event is there and the turn is FAILED with a reason, not running."""
import json
import os
import signal
import time

import requests

from conftest import restart_session_service, start_inspect

TIMEOUT_S = 15
SLOW_TRANSCRIPT = [
    {"text": "Running a long command.", "tool_calls": [{"name": "run_command", "arguments": {"command": "sleep 20; echo done"}}]},
    {"expect": "done", "text": "Finished."},
]


def events_until_turn_finished(url, headers):
    events, frame = [], {}
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
        for raw in response.iter_lines(decode_unicode=True):
            if raw == "":
                if frame:
                    events.append(frame)
                    if frame["event"] == "turn_finished":
                        return events
                    frame = {}
            elif raw and not raw.startswith(":"):
                field, _, value = raw.partition(": ")
                frame[field] = value
    return events


def test_session_service_killed_mid_run(tmp_path_factory):
    with start_inspect(tmp_path_factory) as system:
        (system.data_dir / "transcripts" / "slow.transcript.jsonl").write_text(
            "\n".join(json.dumps(line) for line in SLOW_TRANSCRIPT) + "\n")
        headers = {"Authorization": f"Bearer {system.token}"}
        gateway = system.http_url("Gateway", "")
        created = requests.post(f"{gateway}/v1/sessions", headers=headers, timeout=TIMEOUT_S, json={
            "repository": "local/demo", "model": "scripted:slow", "prompt": "run the slow thing"}).json()
        session_id = created["session"]["id"]

        # Wait until the command is running, then note what has been acknowledged so far.
        deadline = time.monotonic() + TIMEOUT_S
        acknowledged = 0
        while time.monotonic() < deadline:
            session = requests.get(f"{gateway}/v1/sessions/{session_id}", headers=headers, timeout=TIMEOUT_S).json()
            acknowledged = int(session["session"].get("lastSeq", 0))
            if session["session"]["state"] == "SESSION_STATE_RUNNING" and acknowledged >= 7:
                break
            time.sleep(0.05)
        assert acknowledged >= 7, session

        session_pid = next(p["pid"] for p in system.up_state["processes"] if p["service"] == "SessionService")
        os.kill(session_pid, signal.SIGKILL)
        time.sleep(0.2)
        down = requests.get(f"{gateway}/v1/me", headers=headers, timeout=TIMEOUT_S)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "UNAVAILABLE"
        assert "SessionService is unavailable" in down.json()["error"]["message"]

        # Start SessionService again with the same ports, data and peers.
        restarted = restart_session_service(system)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while requests.get(f"{gateway}/v1/me", headers=headers, timeout=TIMEOUT_S).status_code != 200:
                assert time.monotonic() < deadline, "the Gateway did not recover after SessionService restarted"
                time.sleep(0.1)
            events = events_until_turn_finished(f"{gateway}/v1/sessions/{session_id}/events", headers)
            seqs = [int(frame["id"]) for frame in events]
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) > acknowledged  # everything acknowledged before the kill, then the failure
            finished = json.loads(events[-1]["data"])["turnFinished"]
            assert finished["outcome"] == "TURN_OUTCOME_FAILED"
            assert "SessionService stopped while this turn was running" in finished["reason"]
            state = requests.get(f"{gateway}/v1/sessions/{session_id}", headers=headers, timeout=TIMEOUT_S).json()
            assert state["session"]["state"] != "SESSION_STATE_RUNNING"
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=20)
