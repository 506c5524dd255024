"""The Gateway's REST API and its Server-Sent Events stream, as a browser or curl sees them."""
import json

import requests

TIMEOUT_S = 15


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_frames(response, count: int, until: str | None = None) -> list[dict]:
    """Reads `count` SSE event frames (pings and other comments skipped) from a streaming
    response, or fewer when a frame of the event kind `until` arrives."""
    frames, frame = [], {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw is None:
            continue
        if raw == "":
            if frame:
                frames.append(frame)
                frame = {}
                if len(frames) == count or (until and frames[-1].get("event") == until):
                    return frames
            continue
        if raw.startswith(":"):
            continue
        field, _, value = raw.partition(": ")
        frame[field] = value
    return frames


def create_session_with_prompt(system) -> str:
    created = requests.post(
        system.http_url("Gateway", "/v1/sessions"), headers=auth(system.token),
        json={"repository": "local/demo", "title": "sse"}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session_id = created.json()["session"]["id"]
    sent = requests.post(
        system.http_url("Gateway", f"/v1/sessions/{session_id}/prompts"), headers=auth(system.token),
        json={"text": "make the tests pass"}, timeout=TIMEOUT_S)
    assert sent.status_code == 200, sent.text
    assert sent.json()["queuePosition"] == 1
    return session_id


def test_sse_frames_and_resume_with_last_event_id(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    url = inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/events")

    with requests.get(url, headers=auth(inspect_system.token), stream=True, timeout=TIMEOUT_S) as first:
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith("text/event-stream")
        head = read_frames(first, 2)
    assert [frame["id"] for frame in head] == ["1", "2"]
    assert [frame["event"] for frame in head] == ["session_created", "prompt_queued"]
    assert json.loads(head[1]["data"])["promptQueued"]["text"] == "make the tests pass"

    # Reconnect after a disconnect: every later event exactly once, in order, up to the turn's end.
    # No model is named and none is configured, so the turn fails in the MODEL phase saying how
    # to configure one.
    headers = {**auth(inspect_system.token), "Last-Event-ID": head[-1]["id"]}
    rest = []
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as resumed:
        rest = read_frames(resumed, 100, until="turn_finished")
    assert [int(frame["id"]) for frame in rest] == list(range(3, 3 + len(rest)))
    assert rest[0]["event"] == "turn_started"
    finished = json.loads(rest[-1]["data"])["turnFinished"]
    assert finished["outcome"] == "TURN_OUTCOME_FAILED"
    assert finished["failedPhase"] == "TURN_PHASE_MODEL"
    assert "OPENAI_API_KEY" in finished["reason"]

    # ?after_seq= works the same way.
    last = int(rest[-1]["id"])
    with requests.get(url + f"?after_seq={last - 1}", headers=auth(inspect_system.token), stream=True,
                      timeout=TIMEOUT_S) as query:
        assert [frame["id"] for frame in read_frames(query, 1)] == [str(last)]


def test_sse_bad_requests(inspect_system):
    missing = requests.get(
        inspect_system.http_url("Gateway", "/v1/sessions/ses-0-01jabcdefghjkmnpqrstvwxyz0/events"),
        headers=auth(inspect_system.token), timeout=TIMEOUT_S)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"

    session_id = create_session_with_prompt(inspect_system)
    url = inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/events")
    bad = requests.get(url, headers={**auth(inspect_system.token), "Last-Event-ID": "abc"}, timeout=TIMEOUT_S)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert requests.get(url, timeout=TIMEOUT_S).status_code == 401


def test_rest_sessions(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    got = requests.get(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}"), headers=auth(inspect_system.token),
        timeout=TIMEOUT_S)
    assert got.status_code == 200
    assert got.json()["session"]["repository"]["fullName"] == "local/demo"
    listed = requests.get(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=auth(inspect_system.token), timeout=TIMEOUT_S)
    assert session_id in [session["id"] for session in listed.json()["sessions"]]
    empty = requests.post(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/prompts"), headers=auth(inspect_system.token),
        json={"text": ""}, timeout=TIMEOUT_S)
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "INVALID_ARGUMENT"
