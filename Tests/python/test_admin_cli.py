"""`inspect admin users|tokens …` against a running Inspect: accounts made with the CLI work (and
stop working when revoked) over the Gateway's REST API."""
from __future__ import annotations

import os
import re
import subprocess

import requests

TIMEOUT_S = 60


def cli(system, *arguments: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    extra = ["--token", token] if token else []
    return subprocess.run(
        [str(system.bin_dir / "inspect"), *arguments, "--data-dir", str(system.data_dir), *extra],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)


def me(system, token: str) -> requests.Response:
    return requests.get(
        system.http_url("Gateway", "/v1/me"), headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S)


def test_users_and_tokens(inspect_system):
    added = cli(inspect_system, "admin", "users", "add", "Grace Hopper", "--email", "grace@example.com",
                "--github-login", "grace", "--with-token")
    assert added.returncode == 0, added.stderr
    user_id = re.search(r"created (usr-[0-9a-z]+)", added.stdout).group(1)
    token_id, secret = re.search(r"token (tok-[0-9a-z]+): (insp_\S+)", added.stdout).groups()
    assert "shown once" in added.stderr

    # The new token authenticates as Grace.
    answer = me(inspect_system, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["displayName"] == "Grace Hopper"
    assert answer.json()["githubLogin"] == "grace"

    listed = cli(inspect_system, "admin", "users", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.startswith(user_id))
    assert "Grace Hopper" in line and "grace@example.com" in line and "@grace" in line
    assert any("Developer" in l and "admin" in l for l in listed.stdout.splitlines())

    # GitHub logins are unique, whatever their case.
    clash = cli(inspect_system, "admin", "users", "add", "Impostor", "--github-login", "GRACE")
    assert clash.returncode != 0
    assert "grace" in clash.stderr.lower()

    # Grace is not an administrator.
    refused = cli(inspect_system, "admin", "users", "list", token=secret)
    assert refused.returncode != 0
    assert "admin" in refused.stderr.lower()

    tokens = cli(inspect_system, "admin", "tokens", "list", user_id)
    assert tokens.returncode == 0, tokens.stderr
    assert f"{token_id}  cli  {secret[:9]}…  active" in tokens.stdout

    second = cli(inspect_system, "admin", "tokens", "create", user_id, "--name", "laptop")
    assert second.returncode == 0, second.stderr
    second_secret = re.search(r": (insp_\S+)", second.stdout).group(1)
    assert me(inspect_system, second_secret).status_code == 200

    revoked = cli(inspect_system, "admin", "tokens", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert me(inspect_system, secret).status_code == 401
    assert me(inspect_system, second_secret).status_code == 200
    everything = cli(inspect_system, "admin", "tokens", "list", user_id, "--all")
    assert "revoked" in everything.stdout and "laptop" in everything.stdout

    unknown = cli(inspect_system, "admin", "tokens", "revoke", "tok-00000000000000000000000000")
    assert unknown.returncode != 0
