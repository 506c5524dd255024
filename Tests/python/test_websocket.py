"""The Gateway's WebSocket endpoint, `/v1/sessions/{id}/ws`, as a foreign client (websocket-client)
sees it: the resume message, resuming without loss or repeats, browser-style authentication in
the first message, and every refusal with its reason."""
import json
import time

import requests
import websocket

from test_sse import auth, create_session_with_prompt
from test_web_ui import new_user, write_transcript

TIMEOUT_S = 15


def ws_url(system, session_id: str) -> str:
    return system.http_url("Gateway", f"/v1/sessions/{session_id}/ws").replace("http://", "ws://", 1)


def connect(system, session_id: str, token: str | None = None) -> websocket.WebSocket:
    headers = [f"Authorization: Bearer {token}"] if token else []
    return websocket.create_connection(ws_url(system, session_id), header=headers, timeout=TIMEOUT_S)


def receive(ws) -> dict:
    """The next message, as JSON; fails on a close or a binary message."""
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, data)
    return json.loads(data)


def closed(ws) -> tuple[int, str]:
    """Reads frames until the server's close frame; its code and reason. (Frame by frame, without
    the automatic close reply, which may meet a connection the server already shut.)"""
    while True:
        frame = ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()
        assert frame.opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_PING), frame


# Events read past the one a caller waited for, by socket: the next read starts with them.
_pending: dict[int, list[dict]] = {}


def events_until(ws, kind: str) -> list[dict]:
    """The events of `events` messages up to and including the first of `kind`."""
    events = []
    buffered = _pending.pop(id(ws), [])
    while True:
        if not buffered:
            message = receive(ws)
            assert message["type"] == "events", message
            buffered = message["events"]
        while buffered:
            event = buffered.pop(0)
            events.append(event)
            if kind in event:
                _pending[id(ws)] = buffered
                return events


def receive_type(ws, kind: str) -> dict:
    """The next message of type `kind`, skipping events (the session goes on: presence and so on)."""
    while True:
        message = receive(ws)
        if message["type"] == kind:
            return message
        assert message["type"] == "events", message


def resume(ws, after, **extra) -> dict:
    """Sends a resume message; its answer (events sent before it was taken are skipped)."""
    ws.send(json.dumps({"type": "resume", "afterSeq": after, **extra}))
    _pending.pop(id(ws), None)
    while True:
        message = receive(ws)
        if message["type"] != "events":
            return message


def test_resume_message_streams_every_event_once(inspect_system):
    session_id = create_session_with_prompt(inspect_system)

    ws = connect(inspect_system, session_id, inspect_system.token)
    assert resume(ws, 0) == {"type": "subscribed", "sessionId": session_id, "afterSeq": 0}
    everything = events_until(ws, "turnFinished")
    ws.close()
    seqs = [int(event["seq"]) for event in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    assert "sessionCreated" in everything[0] and "promptQueued" in everything[1]
    assert everything[-1]["turnFinished"]["outcome"] == "TURN_OUTCOME_FAILED"

    # A new connection resumes after the last seq it had: the rest exactly once, in order.
    again = connect(inspect_system, session_id, inspect_system.token)
    assert resume(again, 2)["afterSeq"] == 2
    rest = events_until(again, "turnFinished")
    assert rest == everything[2:]

    # A later resume message moves the stream on the same socket: only what follows its seq.
    last = len(everything)
    assert resume(again, last - 1) == {"type": "subscribed", "sessionId": session_id, "afterSeq": last - 1}
    assert events_until(again, "turnFinished") == everything[-1:]
    # ... and the afterSeq may be a string, as the protobuf JSON mapping writes 64-bit numbers.
    assert resume(again, str(last - 2))["afterSeq"] == last - 2
    assert events_until(again, "turnFinished") == everything[-2:]

    # New events arrive live: a second prompt's events follow without another resume, every seq
    # once (others, such as presence, may come between).
    sent = requests.post(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/prompts"), headers=auth(inspect_system.token),
        json={"text": "and once more"}, timeout=TIMEOUT_S)
    assert sent.status_code == 200, sent.text
    live = events_until(again, "turnFinished")
    assert [int(event["seq"]) for event in live] == list(range(last + 1, last + 1 + len(live)))
    assert [event["promptQueued"]["text"] for event in live if "promptQueued" in event] == ["and once more"]
    again.close()


def test_browser_style_token_in_the_first_message(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    ws = connect(inspect_system, session_id)  # no Authorization header, as a browser
    assert resume(ws, 1, token=inspect_system.token)["type"] == "subscribed"
    events = events_until(ws, "turnFinished")
    assert int(events[0]["seq"]) == 2
    # The token belongs in the first message only.
    ws.send(json.dumps({"type": "resume", "afterSeq": 0, "token": inspect_system.token}))
    error = receive_type(ws, "error")
    assert error["error"]["code"] == "INVALID_ARGUMENT"
    assert "first resume message only" in error["error"]["message"]
    ws.close()


def test_wrong_tokens_and_sessions_are_refused_in_the_socket(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    # The upgrade is accepted; the first message is answered with the reason, and the socket closed.
    for token, session, code, words in [
        ("insp_wrong", session_id, "UNAUTHENTICATED", "invalid bearer token"),
        (inspect_system.token, "ses-0-01jabcdefghjkmnpqrstvwxyz0", "NOT_FOUND", "ses-0-01jabcdefghjkmnpqrstvwxyz0"),
    ]:
        ws = connect(inspect_system, session, token)
        error = resume(ws, 0)
        assert error["type"] == "error" and error["error"]["code"] == code, error
        assert words in error["error"]["message"], error
        assert closed(ws)[0] == 1008

    # Someone else's session is as unknown as a missing one.
    _, stranger_token = new_user(inspect_system, "Stranger WS")
    ws = connect(inspect_system, session_id)
    error = resume(ws, 0, token=stranger_token)
    assert error["type"] == "error" and error["error"]["code"] == "NOT_FOUND", error
    assert closed(ws)[0] == 1008

    # An upgrade of any other path is refused before it starts.
    try:
        websocket.create_connection(
            ws_url(inspect_system, session_id).replace("/ws", "/other"),
            header=[f"Authorization: Bearer {inspect_system.token}"], timeout=TIMEOUT_S)
        raise AssertionError("the upgrade was accepted")
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 400, refused

    # A plain GET (no upgrade) says to upgrade, after the usual checks.
    url = inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/ws")
    plain = requests.get(url, headers=auth(inspect_system.token), timeout=TIMEOUT_S)
    assert plain.status_code == 426
    assert plain.headers["Upgrade"] == "websocket"
    assert plain.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert requests.get(url, timeout=TIMEOUT_S).status_code == 401
    missing = requests.get(url.replace(session_id, "ses-0-01jabcdefghjkmnpqrstvwxyz0"),
                           headers=auth(inspect_system.token), timeout=TIMEOUT_S)
    assert missing.status_code == 404


def test_bad_first_messages_close_the_socket_with_the_reason(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    cases = [
        ({"type": "resume", "afterSeq": 0}, "UNAUTHENTICATED", "token"),
        ({"type": "resume", "afterSeq": 0, "token": "insp_wrong"}, "UNAUTHENTICATED", "invalid bearer token"),
        ("not json", "INVALID_ARGUMENT", "not a JSON object"),
        ({"type": "subscribe"}, "INVALID_ARGUMENT", "unknown message type 'subscribe'"),
        ({"type": "resume", "afterSeq": -1, "token": inspect_system.token}, "INVALID_ARGUMENT", "afterSeq"),
        ({"type": "resume", "afterSeq": 1.5, "token": inspect_system.token}, "INVALID_ARGUMENT", "afterSeq"),
        ({"type": "resume", "afterSeq": True, "token": inspect_system.token}, "INVALID_ARGUMENT", "afterSeq"),
        ({"type": "resume", "since": 3, "token": inspect_system.token}, "INVALID_ARGUMENT", "since"),
        ({"type": "resume", "token": ""}, "INVALID_ARGUMENT", "token"),
    ]
    for message, code, words in cases:
        ws = connect(inspect_system, session_id)
        ws.send(message if isinstance(message, str) else json.dumps(message))
        error = receive(ws)
        assert error["type"] == "error", (message, error)
        assert error["error"]["code"] == code, (message, error)
        assert words in error["error"]["message"], (message, error)
        assert closed(ws)[0] == 1008, message

    # A good token on a session that does not exist.
    ws = connect(inspect_system, "ses-0-01jabcdefghjkmnpqrstvwxyz0")
    ws.send(json.dumps({"type": "resume", "token": inspect_system.token}))
    assert receive(ws)["error"]["code"] == "NOT_FOUND"
    assert closed(ws)[0] == 1008

    # A binary message, and a message over the 64 KiB limit.
    ws = connect(inspect_system, session_id, inspect_system.token)
    ws.send_binary(b"\x00\x01")
    assert "not binary" in receive(ws)["error"]["message"]
    assert closed(ws)[0] == 1008
    ws = connect(inspect_system, session_id, inspect_system.token)
    ws.send(json.dumps({"type": "resume", "token": "x" * (70 << 10)}))
    assert closed(ws)[0] == 1009
    # ... also when it comes in fragments, each under the limit.
    ws = connect(inspect_system, session_id, inspect_system.token)
    piece = b"x" * (30 << 10)
    ws.send_frame(websocket.ABNF.create_frame(b'{"type":"resume","token":"' + piece, websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(piece, websocket.ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(piece + b'"}', websocket.ABNF.OPCODE_CONT, fin=1))
    assert closed(ws)[0] == 1009

    # Nothing said: the socket is let go after 10 s.
    ws = connect(inspect_system, session_id, inspect_system.token)
    started = time.monotonic()
    error = receive(ws)
    assert error["error"]["code"] == "UNAUTHENTICATED" and "no resume message" in error["error"]["message"]
    assert closed(ws)[0] == 1008
    assert 9 <= time.monotonic() - started < TIMEOUT_S

    # The Gateway is still up and serving the session.
    assert requests.get(inspect_system.http_url("Gateway", "/healthz"), timeout=TIMEOUT_S).status_code == 200
    ws = connect(inspect_system, session_id, inspect_system.token)
    assert resume(ws, 0)["type"] == "subscribed"
    assert int(receive(ws)["events"][0]["seq"]) == 1
    ws.close()


def test_bad_messages_after_the_first_are_answered_and_the_stream_goes_on(inspect_system):
    session_id = create_session_with_prompt(inspect_system)
    ws = connect(inspect_system, session_id, inspect_system.token)
    assert resume(ws, 0)["type"] == "subscribed"
    events = events_until(ws, "turnFinished")
    for message in ["{", json.dumps({"type": "resume", "afterSeq": "x"}), json.dumps({"hello": 1})]:
        ws.send(message)
        error = receive_type(ws, "error")
        assert error["error"]["code"] == "INVALID_ARGUMENT", (message, error)
    # Still open, still following.
    assert resume(ws, len(events) - 1)["type"] == "subscribed"
    assert events_until(ws, "turnFinished") == events[-1:]
    ws.close()


def test_a_resume_during_a_running_turn_moves_the_stream_exactly(inspect_system):
    # A command that prints for a while: command output streams while the client moves.
    model = write_transcript(inspect_system, "ws-stream", [
        {"text": "Printing.", "tool_calls": [{"name": "run_command", "arguments": {
            "command": "for i in $(seq 1 60); do echo line $i; sleep 0.05; done"}}]},
        {"expect": "line 60", "text": "Printed."},
    ])
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=auth(inspect_system.token),
        json={"repository": "local/demo", "model": model, "prompt": "print"}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session_id = created.json()["session"]["id"]
    ws = connect(inspect_system, session_id, inspect_system.token)
    assert resume(ws, 0)["type"] == "subscribed"
    # Wait for output to flow, then jump back a few events while more keep coming.
    seen = events_until(ws, "commandOutput")
    seen += events_until(ws, "commandOutput")
    back = int(seen[-1]["seq"]) - 3
    assert resume(ws, back) == {"type": "subscribed", "sessionId": session_id, "afterSeq": back}
    after = events_until(ws, "turnFinished")
    assert [int(event["seq"]) for event in after] == list(range(back + 1, back + 1 + len(after)))
    assert after[-1]["turnFinished"]["outcome"] == "TURN_OUTCOME_SUCCEEDED"

    # Resume messages are limited: five at once, then one a second.
    for _ in range(7):
        ws.send(json.dumps({"type": "resume", "afterSeq": back}))
    answers = []
    while len(answers) < 7:
        message = receive(ws)
        if message["type"] != "events":
            answers.append(message)
    refused = [answer for answer in answers if answer["type"] == "error"]
    assert refused and all(answer["error"]["code"] == "RESOURCE_EXHAUSTED" for answer in refused), answers
    assert "too many resume messages" in refused[0]["error"]["message"]
    ws.close()
