"""Bad input at the Gateway's public HTTP port, against a running Inspect: each refusal has the
status the issue names and a JSON error body that says what was wrong, and the Gateway stays up."""
from __future__ import annotations

import os
import re
import subprocess

import requests

TIMEOUT_S = 30


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: requests.Response) -> tuple[str, str]:
    body = response.json()["error"]
    return body["code"], body["message"]


def test_bad_input_gets_clear_errors(inspect_system):
    url = lambda path: inspect_system.http_url("Gateway", path)  # noqa: E731
    token = inspect_system.token

    # Oversized body (JSON bodies may be 4 MiB): 413, and the Gateway still answers.
    big = requests.post(url("/v1/sessions"), headers={**auth(token), "Content-Type": "application/json"},
                        data=b'{"repository":"local/demo","prompt":"' + b"x" * (5 << 20) + b'"}', timeout=TIMEOUT_S)
    assert big.status_code == 413, big.text
    assert requests.get(url("/healthz"), timeout=TIMEOUT_S).status_code == 200

    # Malformed JSON: 400 saying why.
    malformed = requests.post(url("/v1/sessions"), headers={**auth(token), "Content-Type": "application/json"},
                              data=b'{"repository": "local/demo",', timeout=TIMEOUT_S)
    assert malformed.status_code == 400, malformed.text
    code, message = error_of(malformed)
    assert code == "INVALID_ARGUMENT" and "CreateSessionRequest" in message
    unknown_field = requests.post(url("/v1/sessions"), headers=auth(token), json={"repositroy": "local/demo"},
                                  timeout=TIMEOUT_S)
    assert unknown_field.status_code == 400, unknown_field.text
    assert "repositroy" in error_of(unknown_field)[1]

    # An enum given as a number beyond 32 bits (it used to crash the Gateway inside SwiftProtobuf's
    # binary encoder; schemathesis found it): 400, and the Gateway is still up.
    for number in (-43995587046711640, 3000000000):
        huge = requests.post(url("/v1/sessions"), headers=auth(token), json={
            "repository": "local/demo", "permissionRules": [{"tool": "x", "decision": number}]}, timeout=TIMEOUT_S)
        assert huge.status_code == 400, huge.text
        assert str(number) in error_of(huge)[1]
    assert requests.get(url("/healthz"), timeout=TIMEOUT_S).status_code == 200

    # Unknown routes: 404 as JSON.
    missing = requests.get(url("/v1/no-such-thing"), headers=auth(token), timeout=TIMEOUT_S)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"

    # Wrong token: 401 with a Bearer challenge.
    wrong = requests.get(url("/v1/sessions"), headers=auth("insp_wrong"), timeout=TIMEOUT_S)
    assert wrong.status_code == 401
    assert wrong.headers.get("www-authenticate", "").startswith("Bearer")
    assert error_of(wrong)[0] == "UNAUTHENTICATED"
    assert requests.get(url("/v1/sessions"), timeout=TIMEOUT_S).status_code == 401

    # Someone else's session does not exist for you: 404, exactly like an unknown id.
    created = requests.post(url("/v1/sessions"), headers=auth(token), json={"repository": "local/demo"},
                            timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    session = created.json()["session"]["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    added = subprocess.run(
        [str(inspect_system.bin_dir / "inspect"), "admin", "users", "add", "Mallory", "--with-token",
         "--data-dir", str(inspect_system.data_dir)], capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert added.returncode == 0, added.stderr
    other = re.search(r": (insp_\S+)", added.stdout).group(1)
    theirs = requests.get(url(f"/v1/sessions/{session}"), headers=auth(other), timeout=TIMEOUT_S)
    nonexistent = requests.get(url("/v1/sessions/ses-0-00000000000000000000000000"), headers=auth(other),
                               timeout=TIMEOUT_S)
    assert theirs.status_code == 404 and nonexistent.status_code == 404
    assert error_of(theirs)[0] == "NOT_FOUND"
    prompt = requests.post(url(f"/v1/sessions/{session}/prompts"), headers=auth(other), json={"text": "hi"},
                           timeout=TIMEOUT_S)
    assert prompt.status_code == 404
    assert requests.get(url("/healthz"), timeout=TIMEOUT_S).status_code == 200
