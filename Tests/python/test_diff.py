"""`GET /v1/sessions/{id}/diff`: the session branch's changes against its base, as last pushed,
read through the Gateway after the demo's scripted turn pushed its fix."""
import json

import requests

from test_sse import auth, read_frames

TIMEOUT_S = 30
DEMO_PROMPT = "The test test_average_of_nothing_is_zero fails. Make average([]) return 0 and push the fix."


def test_diff_of_the_pushed_branch(inspect_system):
    headers = auth(inspect_system.token)
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=headers,
        json={"repository": "local/demo", "model": "scripted:demo"}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session_id = created.json()["session"]["id"]
    diff_url = inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/diff")

    # Before anything was pushed: the base is known, the diff is empty.
    before = requests.get(diff_url, headers=headers, timeout=TIMEOUT_S)
    assert before.status_code == 200, before.text
    body = before.json()
    assert body["baseBranch"] == "main" and body["branch"] == f"inspect/{session_id}"
    assert body["diff"].get("headCommit", "") == "" and body["diff"].get("files", []) == []
    assert len(body["diff"]["baseCommit"]) == 40

    sent = requests.post(
        inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/prompts"), headers=headers,
        json={"text": DEMO_PROMPT}, timeout=TIMEOUT_S)
    assert sent.status_code == 200, sent.text
    with requests.get(inspect_system.http_url("Gateway", f"/v1/sessions/{session_id}/events"), headers=headers,
                      stream=True, timeout=TIMEOUT_S) as events:
        frames = read_frames(events, 500, until="turn_finished")
    finished = json.loads(frames[-1]["data"])["turnFinished"]
    assert finished["outcome"] == "TURN_OUTCOME_SUCCEEDED", finished
    pushed = [json.loads(frame["data"])["branchPushed"] for frame in frames if frame["event"] == "branch_pushed"]
    assert pushed, "the demo pushed its fix"

    after = requests.get(diff_url, headers=headers, timeout=TIMEOUT_S)
    assert after.status_code == 200, after.text
    diff = after.json()["diff"]
    assert diff["headCommit"] == pushed[-1]["commit"]
    assert diff["files"] == [{"path": "calc.py", "status": "modified", "additions": 2}]
    assert "+    if not numbers:\n+        return 0\n" in diff["patch"]
    assert diff["patch"].startswith("diff --git a/calc.py b/calc.py\n")
    assert not diff.get("truncated", False)

    # A smaller patch is cut at a line's end and says so.
    cut = requests.get(diff_url + "?maxPatchBytes=60", headers=headers, timeout=TIMEOUT_S).json()["diff"]
    assert cut["truncated"] is True
    assert len(cut["patch"].encode()) <= 60 and cut["patch"].endswith("\n")
    assert diff["patch"].startswith(cut["patch"])


def test_diff_bad_requests(inspect_system):
    headers = auth(inspect_system.token)
    missing = requests.get(
        inspect_system.http_url("Gateway", "/v1/sessions/ses-0-01jabcdefghjkmnpqrstvwxyz0/diff"), headers=headers,
        timeout=TIMEOUT_S)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    created = requests.post(
        inspect_system.http_url("Gateway", "/v1/sessions"), headers=headers, json={"repository": "local/demo"},
        timeout=TIMEOUT_S).json()
    url = inspect_system.http_url("Gateway", f"/v1/sessions/{created['session']['id']}/diff")
    bad = requests.get(url + "?maxPatchBytes=lots", headers=headers, timeout=TIMEOUT_S)
    assert bad.status_code == 400 and "maxPatchBytes" in bad.json()["error"]["message"]
    assert requests.get(url, timeout=TIMEOUT_S).status_code == 401
