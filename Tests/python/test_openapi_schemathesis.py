"""schemathesis against the Gateway's own /openapi.json on a running Inspect: every documented
operation is called with generated inputs (valid and invalid, plus stateful sequences through the
document's links); no answer may be a 5xx or differ from the documented schema."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TIMEOUT_S = 600


def test_no_server_errors_and_schema_conformance(inspect_system, tmp_path):
    schemathesis = shutil.which("schemathesis") or shutil.which("st")
    assert schemathesis, "schemathesis is not installed (scripts/setup.sh installs it)"
    url = inspect_system.http_url("Gateway", "/openapi.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    # Audio bodies for the voice route come from our hooks.
    env["SCHEMATHESIS_HOOKS"] = "schemathesis_hooks"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = subprocess.run(
        [schemathesis, "run", url, "-H", f"Authorization: Bearer {inspect_system.token}",
         "--checks", "not_a_server_error,response_schema_conformance",
         # The same inputs every run (a failure reproduces); enough of them to reach every path.
         "--max-examples", "25", "--seed", "1", "--request-timeout", "15"],
        capture_output=True, text=True, env=env, timeout=TIMEOUT_S, cwd=tmp_path)
    # The failures first (the end of the output is mostly warnings).
    failures = result.stdout.split("FAILURES", 1)[-1].split("WARNINGS", 1)[0] if "FAILURES" in result.stdout else ""
    report = failures[:8000] + result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1].lower(), report
