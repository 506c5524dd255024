"""The demo session end to end through the Gateway, with real processes: REST to start it, SSE to
watch it (with a dropped connection and a resume), git to check what it pushed."""
import json
import subprocess
from pathlib import Path

import requests

TIMEOUT_S = 30
PROMPT = "The test test_average_of_nothing_is_zero fails. Make average([]) return 0 and push the fix."


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def frames(response):
    """Yields SSE event frames (dicts of their fields) from a streaming response."""
    frame = {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw is None:
            continue
        if raw == "":
            if frame:
                yield frame
                frame = {}
        elif not raw.startswith(":"):
            field, _, value = raw.partition(": ")
            frame[field] = value


def run_tests_on(remote: Path, branch: str, into: Path) -> subprocess.CompletedProcess:
    subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(remote), str(into)], check=True)
    return subprocess.run(["python3", "-m", "unittest"], cwd=into, capture_output=True, text=True)


def test_demo_session_end_to_end(inspect_system, tmp_path):
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=auth(inspect_system.token),
        json={"repository": "local/demo", "model": "scripted:demo", "prompt": PROMPT}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session = created.json()["session"]
    session_id, branch = session["id"], session["branch"]
    assert branch == f"inspect/{session_id}"

    # (e) Read a few events, drop the connection, resume with Last-Event-ID until the turn ends.
    url = inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/events")
    events = []
    with requests.get(url, headers=auth(inspect_system.token), stream=True, timeout=TIMEOUT_S) as first:
        for frame in frames(first):
            events.append(frame)
            if len(events) == 5:
                break
    headers = {**auth(inspect_system.token), "Last-Event-ID": events[-1]["id"]}
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as resumed:
        for frame in frames(resumed):
            events.append(frame)
            if frame["event"] == "turn_finished":
                break

    # (d) seq is gap-free from 1 with no duplicate across the reconnect.
    assert [int(frame["id"]) for frame in events] == list(range(1, len(events) + 1))
    payloads = [json.loads(frame["data"]) for frame in events]
    finished = payloads[-1]["turnFinished"]
    # (c) the scripted model's per-turn requirements held (else it fails the call and the turn).
    assert finished["outcome"] == "TURN_OUTCOME_SUCCEEDED", finished

    # (d) every tool call went QUEUED -> RUNNING -> SUCCEEDED/FAILED.
    states: dict[str, list[str]] = {}
    for payload in payloads:
        if "toolCall" in payload:
            call = payload["toolCall"]
            states.setdefault(call["toolCallId"], []).append(call["state"])
    assert len(states) == 5
    for sequence in states.values():
        assert sequence[:2] == ["TOOL_CALL_STATE_QUEUED", "TOOL_CALL_STATE_RUNNING"], sequence
        assert sequence[2] in ("TOOL_CALL_STATE_SUCCEEDED", "TOOL_CALL_STATE_FAILED"), sequence
        assert len(sequence) == 3, sequence

    # (b) the image's nonce shows up in a run_command result: the command ran in the sandbox.
    images = list((inspect_system.data_dir / "images").glob("*.json"))
    nonces = {json.loads(image.read_text())["nonce"] for image in images}
    results = [payload["toolCall"].get("result", "") for payload in payloads if "toolCall" in payload]
    assert any(nonce in result for nonce in nonces for result in results), (nonces, results[:2])

    kinds = [frame["event"] for frame in events]
    for kind in ["session_created", "prompt_queued", "turn_started", "sandbox_status", "text_delta",
                 "assistant_message", "usage", "tool_call", "command_output", "branch_pushed", "turn_finished"]:
        assert kind in kinds, kind

    # (a) the pushed branch passes its tests; main still fails them.
    remote = inspect_system.data_dir / "remotes" / "demo.git"
    fixed = run_tests_on(remote, branch, tmp_path / "fixed")
    assert fixed.returncode == 0, fixed.stderr
    original = run_tests_on(remote, "main", tmp_path / "main")
    assert original.returncode != 0
    assert "FAILED (errors=1)" in original.stderr
