"""`inspect repos add|list` and `inspect secrets set|list` against a running Inspect (real
processes: the CLI, the Gateway, SessionService and SandboxService), and the same data over REST."""
from __future__ import annotations

import os
import subprocess

import requests

TIMEOUT_S = 60


def cli(system, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    return subprocess.run(
        [str(system.bin_dir / "inspect"), *arguments, "--data-dir", str(system.data_dir)],
        input=stdin if stdin is not None else "", capture_output=True, text=True, env=env, timeout=TIMEOUT_S)


def git_head(remote) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_repos_add_and_list(inspect_system):
    head = git_head(inspect_system.data_dir / "remotes" / "demo.git")
    added = cli(inspect_system, "repos", "add", "local/demo")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("registered local/demo (default branch main, ")
    assert head[:12] in added.stdout
    assert (inspect_system.data_dir / "repos" / "local" / "demo" / "mirror.git" / "HEAD").is_file()

    again = cli(inspect_system, "repos", "add", "local/demo")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("fetched again local/demo")

    listed = cli(inspect_system, "repos", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == ["local/demo", "main"] for line in listed.stdout.splitlines())

    missing = cli(inspect_system, "repos", "add", "local/no-such-repo")
    assert missing.returncode != 0
    assert "local/no-such-repo" in missing.stderr
    malformed = cli(inspect_system, "repos", "add", "not-a-repository")
    assert malformed.returncode != 0
    assert "owner/name" in malformed.stderr

    rest = requests.get(
        inspect_system.http_url("Gateway", "/v1/repositories"),
        headers={"Authorization": f"Bearer {inspect_system.token}"}, timeout=TIMEOUT_S)
    assert rest.status_code == 200, rest.text
    listed_rest = {r["name"]: r for r in rest.json()["repositories"]}
    assert listed_rest["local/demo"]["headCommit"] == head
    assert "local/no-such-repo" not in listed_rest


def test_secrets_set_from_stdin(inspect_system):
    stored = cli(inspect_system, "secrets", "set", "github", stdin="ghp_from_stdin\n")
    assert stored.returncode == 0, stored.stderr
    assert "stored github" in stored.stdout
    assert "ghp_from_stdin" not in stored.stdout + stored.stderr
    listed = cli(inspect_system, "secrets", "list")
    assert listed.returncode == 0, listed.stderr
    assert "github" in listed.stdout.split()
    empty = cli(inspect_system, "secrets", "set", "github", stdin="")
    assert empty.returncode != 0
    assert "standard input" in empty.stderr
