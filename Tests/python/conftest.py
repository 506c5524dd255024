"""Shared fixtures for the Python tests: a foreign (non-Swift) client's view of Inspect.

- ``proto_stubs``: Python stubs generated from ``protos/`` with ``grpc_tools.protoc`` into a
  temporary directory during the run (never committed).
- ``inspect_system``: the five services started with ``inspect up --detach`` on ten free
  loopback ports, stopped with ``inspect down`` afterwards (and checked to be gone).

Binaries come from ``$INSPECT_BIN_DIR`` (default ``<repo>/.build/debug``). Every connection
goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import re
import shutil
import signal
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
LOOPBACK = "127.0.0.1"

# service binary -> (short name, environment prefix, HTTP port variable suffix)
SERVICES = {
    "Gateway": ("gateway", "INSPECT_GATEWAY", "HTTP_PORT"),
    "SessionService": ("session", "INSPECT_SESSION", "ADMIN_PORT"),
    "SandboxService": ("sandbox", "INSPECT_SANDBOX", "ADMIN_PORT"),
    "ModelRouter": ("model-router", "INSPECT_MODEL_ROUTER", "ADMIN_PORT"),
    "RepoClassifier": ("classifier", "INSPECT_CLASSIFIER", "ADMIN_PORT"),
}

# The generated top-level package. protoc names it after the proto path (`inspect/...`), which
# would collide with Python's standard `inspect` module, so the stubs are moved under this name.
STUB_PACKAGE = "inspect_protos"

UP_TIMEOUT_S = 120
DOWN_TIMEOUT_S = 90


def bin_dir() -> Path:
    configured = os.environ.get("INSPECT_BIN_DIR")
    return Path(configured) if configured else REPO_ROOT / ".build" / "debug"


# --------------------------------------------------------------------------------------------
# Generated stubs
# --------------------------------------------------------------------------------------------


class ProtoStubs:
    """Access to the generated modules, e.g. ``stubs.load("session.v1.session_service_pb2")``."""

    def __init__(self, root: Path):
        self.root = root

    def load(self, dotted: str):
        return importlib.import_module(f"{STUB_PACKAGE}.{dotted}")


@pytest.fixture(scope="session")
def proto_stubs(tmp_path_factory) -> ProtoStubs:
    import grpc_tools  # noqa: F401  (fail early with a clear import error)
    from grpc_tools import protoc  # noqa: F401

    out = tmp_path_factory.mktemp("python-stubs")
    # grpc.health.v1 comes from grpcio-health-checking (`grpc_health.v1`); generating our copy
    # of health.proto would register the same message names twice and shadow the `grpc` package.
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "inspect").rglob("*.proto"))
    assert sources, f"no .proto files under {PROTO_ROOT / 'inspect'}"
    wkt_include = Path(grpc_tools.__file__).parent / "_proto"
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTO_ROOT}", f"-I{wkt_include}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        *sources,
    ]
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"protoc failed ({result.returncode}):\n{result.stderr}"

    # Move `inspect/…` to `inspect_protos/…` and rewrite the generated absolute imports.
    generated = out / "inspect"
    package = out / STUB_PACKAGE
    generated.rename(package)
    import_line = re.compile(r"^(\s*)(from|import) inspect\.", re.MULTILINE)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(import_line.sub(rf"\1\2 {STUB_PACKAGE}.", text))
    for directory in [package, *[d for d in package.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").touch()

    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    try:
        yield ProtoStubs(out)
    finally:
        sys.path.remove(str(out))


# --------------------------------------------------------------------------------------------
# A running system
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InspectSystem:
    data_dir: Path
    bin_dir: Path
    grpc_ports: dict[str, int]  # by binary name, e.g. "Gateway"
    http_ports: dict[str, int]  # the Gateway's public HTTP port, the others' admin ports
    token: str
    up_state: dict
    up_output: str

    def grpc_target(self, service: str) -> str:
        return f"{LOOPBACK}:{self.grpc_ports[service]}"

    def http_url(self, service: str, path: str) -> str:
        return f"http://{LOOPBACK}:{self.http_ports[service]}{path}"

    @property
    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.up_state.get("processes", [])]


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on 127.0.0.1 a moment ago (all held open at once).

    They come from 20000-32767, below Linux's ephemeral range, so that no outgoing connection can
    take one before the service binds it (as the Swift tests' FreePort does)."""
    sockets = []
    try:
        for port in random.sample(range(20000, 32768), 2000):
            if len(sockets) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        if len(sockets) < count:
            raise RuntimeError(f"found only {len(sockets)} free ports in 20000-32767")
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def process_is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a reaped-later zombie has already exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2:].split(" ", 1)[0]
    return state not in ("Z", "X")


def read_up_state(data_dir: Path) -> dict:
    path = data_dir / "run" / "up.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def log_tails(data_dir: Path, lines: int = 30) -> str:
    logs = data_dir / "logs"
    parts = []
    for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no service logs)"


def clean_environment(data_dir: Path, binaries: Path) -> dict[str, str]:
    """The caller's environment without any INSPECT_* setting, plus the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    env["INSPECT_BIN_DIR"] = str(binaries)
    env["INSPECT_DATA_DIR"] = str(data_dir)
    env["INSPECT_LOG_FORMAT"] = "json"
    return env


@pytest.fixture(scope="session")
def inspect_system(tmp_path_factory) -> InspectSystem:
    with start_inspect(tmp_path_factory) as system:
        yield system


@contextlib.contextmanager
def start_inspect(tmp_path_factory, extra_env: dict[str, str] | None = None):
    """`inspect up --detach` on free loopback ports in a new data directory (with `extra_env` in
    the services' environment); `inspect down` after, failing if any process it started is left."""
    binaries = bin_dir()
    inspect = binaries / "inspect"
    missing = [b for b in ["inspect", *SERVICES] if not os.access(binaries / b, os.X_OK)]
    if missing:
        pytest.fail(
            f"missing binaries in {binaries}: {', '.join(missing)} "
            "(build with `swift build` or set INSPECT_BIN_DIR)")

    data_dir = tmp_path_factory.mktemp("inspect-data")
    scratch = tmp_path_factory.mktemp("inspect-cli")
    env = clean_environment(data_dir, binaries)
    env.update(extra_env or {})
    ports = free_loopback_ports(2 * len(SERVICES))
    grpc_ports, http_ports = {}, {}
    for index, (service, (_, prefix, http_suffix)) in enumerate(SERVICES.items()):
        grpc_ports[service] = ports[2 * index]
        http_ports[service] = ports[2 * index + 1]
        env[f"{prefix}_HOST"] = LOOPBACK
        env[f"{prefix}_GRPC_PORT"] = str(grpc_ports[service])
        env[f"{prefix}_{http_suffix}"] = str(http_ports[service])

    def run_cli(name: str, *arguments: str, timeout: float) -> tuple[int | None, str]:
        """Runs `inspect …` with its output in files (no pipe a detached child could hold open)."""
        out_path = scratch / f"{name}.out"
        with open(out_path, "wb") as out:
            try:
                code = subprocess.run(
                    [str(inspect), *arguments, "--data-dir", str(data_dir)],
                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    timeout=timeout, cwd=scratch,
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
        return code, out_path.read_text(errors="replace")

    started_pids: set[int] = set()
    try:
        code, up_output = run_cli("up", "up", "--detach", timeout=UP_TIMEOUT_S)
        up_state = read_up_state(data_dir)
        started_pids.update(int(p["pid"]) for p in up_state.get("processes", []))
        if code != 0:
            what = f"timed out after {UP_TIMEOUT_S} s" if code is None else f"exited {code}"
            pytest.fail(f"`inspect up --detach` {what}:\n{up_output}\n{log_tails(data_dir)}")
        token_file = data_dir / "dev-token"
        assert token_file.is_file(), f"`inspect up` wrote no {token_file}:\n{up_output}"
        token = token_file.read_text().strip()
        assert token, f"{token_file} is empty"
        yield InspectSystem(
            data_dir=data_dir, bin_dir=binaries, grpc_ports=grpc_ports, http_ports=http_ports,
            token=token, up_state=up_state, up_output=up_output)
    finally:
        started_pids.update(int(p["pid"]) for p in read_up_state(data_dir).get("processes", []))
        down_code, down_output = run_cli("down", "down", timeout=DOWN_TIMEOUT_S)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(process_is_running(p) for p in started_pids):
            time.sleep(0.1)
        survivors = sorted(p for p in started_pids if process_is_running(p))
        for pid in survivors:  # only the pids `inspect up` recorded for this run
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        assert down_code == 0, f"`inspect down` exited {down_code}:\n{down_output}"
        assert not survivors, (
            f"`inspect down` left pids {survivors} running (killed them now):\n{down_output}\n"
            + log_tails(data_dir))
        shutil.rmtree(data_dir, ignore_errors=True)


def restart_session_service(system: "InspectSystem", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts SessionService again (after a test killed it) with the same ports, data and peers,
    plus `extra_env`; its output goes to `logs/session-restarted.log`. The caller stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    env.update(extra_env or {})
    env.update({
        "INSPECT_DATA_DIR": str(system.data_dir),
        "INSPECT_SESSION_HOST": LOOPBACK,
        "INSPECT_SESSION_GRPC_PORT": str(system.grpc_ports["SessionService"]),
        "INSPECT_SESSION_ADMIN_PORT": str(system.http_ports["SessionService"]),
        "INSPECT_SANDBOX_ADDR": f"{LOOPBACK}:{system.grpc_ports['SandboxService']}",
        "INSPECT_MODEL_ROUTER_ADDR": f"{LOOPBACK}:{system.grpc_ports['ModelRouter']}",
        "INSPECT_CLASSIFIER_ADDR": f"{LOOPBACK}:{system.grpc_ports['RepoClassifier']}",
    })
    with open(system.data_dir / "logs" / "session-restarted.log", "wb") as log:
        return subprocess.Popen([str(system.bin_dir / "SessionService")], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
