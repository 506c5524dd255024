"""compose.yaml: five services from one image, health checks on admin endpoints, startup order
following the call graph, and a file that docker-compose itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"

# compose service -> (binary, gRPC port, HTTP port: the Gateway's public one, else admin)
SERVICES = {
    "gateway": ("Gateway", 50050, 8080),
    "session": ("SessionService", 50051, 51051),
    "sandbox": ("SandboxService", 50052, 51052),
    "model-router": ("ModelRouter", 50053, 51053),
    "classifier": ("RepoClassifier", 50054, 51054),
}

# Who calls whom (docs/ARCHITECTURE.md §1), as compose start-up dependencies.
CALL_GRAPH = {
    "gateway": {"session", "classifier", "model-router"},
    "session": {"sandbox", "model-router", "classifier"},  # RepoClassifier for Slack (issue 10)
    "sandbox": {"model-router"},
    "model-router": set(),
    "classifier": {"model-router"},
}

PEER_VARIABLES = {
    "session": "INSPECT_SESSION_ADDR",
    "sandbox": "INSPECT_SANDBOX_ADDR",
    "model-router": "INSPECT_MODEL_ROUTER_ADDR",
    "classifier": "INSPECT_CLASSIFIER_ADDR",
}

DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open() as f:
        return yaml.safe_load(f)


def as_list(value) -> list[str]:
    """A compose command/test in either form, as a list of words."""
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published_container_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def test_exactly_the_five_services(compose):
    assert set(compose["services"]) == set(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_binary_from_the_shared_image(compose, name):
    service = compose["services"][name]
    binary = SERVICES[name][0]
    assert service.get("build") in (".", {"context": "."}), service.get("build")
    assert service.get("image") == "inspect:local"
    words = as_list(service.get("entrypoint") or []) + as_list(service.get("command") or [])
    assert any(Path(w).name == binary for w in words), words
    assert "--host" in words and words[words.index("--host") + 1] == "0.0.0.0", words
    assert environment(service).get("INSPECT_LOG_FORMAT") == "json"


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_hits_the_admin_endpoint(compose, name):
    healthcheck = compose["services"][name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    test = " ".join(as_list(healthcheck["test"]))
    port = SERVICES[name][2]
    assert re.search(rf"http://(127\.0\.0\.1|localhost):{port}/(readyz|healthz)\b", test), test
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in healthcheck, f"{name}: healthcheck lacks {key}"


@pytest.mark.parametrize("name", SERVICES)
def test_depends_on_follows_the_call_graph_and_waits_for_health(compose, name):
    depends_on = compose["services"][name].get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, got {depends_on!r}"
    assert set(depends_on) == CALL_GRAPH[name]
    for peer, spec in depends_on.items():
        assert spec.get("condition") == "service_healthy", f"{name} -> {peer}: {spec}"


@pytest.mark.parametrize("name", SERVICES)
def test_peers_are_found_by_compose_name(compose, name):
    env = environment(compose["services"][name])
    for peer in CALL_GRAPH[name]:
        assert env.get(PEER_VARIABLES[peer]) == f"{peer}:{SERVICES[peer][1]}", (name, peer, env)


def test_sandbox_is_privileged_and_others_are_not(compose):
    for name, service in compose["services"].items():
        assert bool(service.get("privileged")) == (name == "sandbox"), name


def test_stateful_services_keep_their_data_in_named_volumes(compose):
    declared = set(compose.get("volumes") or {})
    for name in ("session", "sandbox", "classifier"):
        volumes = compose["services"][name].get("volumes") or []
        named = {str(v).split(":", 1)[0] for v in volumes if not str(v).startswith(("/", "."))}
        assert named & declared, f"{name} has no named volume: {volumes}"
        assert any(str(v).split(":")[1] == "/var/lib/inspect" for v in volumes), volumes


def test_only_the_gateway_is_published(compose):
    assert published_container_ports(compose["services"]["gateway"]) == {8080, 50050}
    for name, service in compose["services"].items():
        if name != "gateway":
            assert not service.get("ports"), f"{name} publishes {service['ports']}"


# --- docker-compose itself ------------------------------------------------------------------------


def docker_compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DOCKER_COMPOSE, "-f", str(path), "config", "-q"],
        cwd=path.parent, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file():
    result = docker_compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not installed")
def test_docker_compose_rejects_an_invalid_key(tmp_path):
    # The same file in a scratch directory is accepted (so `build: .` is not what fails) …
    good = tmp_path / "compose.yaml"
    good.write_text(COMPOSE_FILE.read_text())
    result = docker_compose_config(good)
    assert result.returncode == 0, result.stderr
    # … and with one unknown service key it is not.
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    document["services"]["gateway"]["no_such_option"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document, sort_keys=False))
    result = docker_compose_config(bad)
    assert result.returncode != 0, result.stdout
    assert "no_such_option" in result.stderr, result.stderr
