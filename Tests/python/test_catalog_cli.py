"""`inspect catalog list|set|remove` against a running Inspect: the CLI reaches RepoClassifier's
catalog through the Gateway's gRPC port; anyone signed in lists it, only administrators change
it; the change is what classification uses."""
from __future__ import annotations

import re

import grpc

from test_admin_cli import cli


def test_catalog_through_the_gateway(inspect_system, tmp_path, proto_stubs):
    readme = tmp_path / "README.md"
    readme.write_text("# ledger\nDouble-entry bookkeeping: journals, postings and trial balances.\n")
    added = cli(inspect_system, "catalog", "set", "acme/ledger", "--description", "The accounting ledger service.",
                "--hint", "journal entries", "--hint", "trial balance", "--alias", "ledger", "--channel", "#finance-eng",
                "--readme-file", str(readme))
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added acme/ledger"

    listed = cli(inspect_system, "catalog", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.startswith("acme/ledger"))
    assert "channels #finance-eng" in line and "aliases ledger" in line
    assert "hints journal entries, trial balance" in line and f"README {len(readme.read_bytes().strip())} bytes" in line
    assert "    The accounting ledger service." in listed.stdout

    # What classification uses: a README word alone now points at it.
    classifier = proto_stubs.load("classifier.v1.classifier_service_pb2")
    stubs = proto_stubs.load("classifier.v1.classifier_service_pb2_grpc")
    with grpc.insecure_channel(inspect_system.grpc_target("RepoClassifier")) as channel:
        ranked = stubs.RepoClassifierServiceStub(channel).Classify(
            classifier.ClassifyRequest(text="the postings do not add up"), timeout=30)
    assert ranked.candidates[0].repo == "acme/ledger" and "README words" in ranked.candidates[0].reason

    replaced = cli(inspect_system, "catalog", "set", "ACME/Ledger", "--description", "Ledger.")
    assert replaced.returncode == 0 and replaced.stdout.strip() == "replaced ACME/Ledger", replaced.stderr

    # Someone who is not an administrator may list, not change.
    user = cli(inspect_system, "admin", "users", "add", "Barbara Liskov", "--email", "barbara@example.com",
               "--with-token")
    assert user.returncode == 0, user.stderr
    token = re.search(r"token tok-[0-9a-z]+: (insp_\S+)", user.stdout).group(1)
    assert cli(inspect_system, "catalog", "list", token=token).returncode == 0
    refused = cli(inspect_system, "catalog", "remove", "acme/ledger", token=token)
    assert refused.returncode != 0 and "administrators" in refused.stderr, refused.stderr
    refused = cli(inspect_system, "catalog", "set", "acme/other", token=token)
    assert refused.returncode != 0 and "administrators" in refused.stderr, refused.stderr

    bad = cli(inspect_system, "catalog", "set", "ledger")
    assert bad.returncode != 0 and "not owner/name" in bad.stderr, bad.stderr

    removed = cli(inspect_system, "catalog", "remove", "acme/ledger")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed ACME/Ledger", removed.stderr
    again = cli(inspect_system, "catalog", "remove", "acme/ledger")
    assert again.returncode != 0 and "not in the catalog" in again.stderr, again.stderr
    assert "acme/ledger" not in cli(inspect_system, "catalog", "list").stdout.lower()
