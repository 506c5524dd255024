"""A foreign gRPC client (Python grpcio, stubs generated from protos/) against a running Inspect.

The system is started once for the module by the `inspect_system` fixture (conftest.py) with
`inspect up --detach` on free loopback ports, and stopped with `inspect down` afterwards.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import LOOPBACK, SERVICES

CALL_TIMEOUT_S = 10
SERVICE_NAMES = list(SERVICES)


@pytest.fixture(scope="module")
def channels(inspect_system):
    """One plaintext channel per service's gRPC port, all to 127.0.0.1."""
    opened = {name: grpc.insecure_channel(inspect_system.grpc_target(name)) for name in SERVICE_NAMES}
    try:
        for name, channel in opened.items():
            try:
                grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT_S)
            except grpc.FutureTimeoutError:
                pytest.fail(f"{name}: no gRPC connection to {inspect_system.grpc_target(name)}")
        yield opened
    finally:
        for channel in opened.values():
            channel.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def http_get(url: str) -> tuple[int, bytes]:
    assert url.startswith(f"http://{LOOPBACK}:")
    try:
        with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- the launcher's view ------------------------------------------------------------------------


def test_up_state_lists_every_service_on_the_requested_ports(inspect_system):
    processes = {p["service"]: p for p in inspect_system.up_state["processes"]}
    assert sorted(processes) == sorted(SERVICE_NAMES)
    for name, process in processes.items():
        assert process["pid"] > 0
        assert process["grpc"]["port"] == inspect_system.grpc_ports[name], name
        assert process["http"]["port"] == inspect_system.http_ports[name], name
        assert process["log"].endswith(f"logs/{SERVICES[name][0]}.log"), process["log"]
    assert inspect_system.up_state.get("launcherPID") is None  # detached


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_admin_endpoints(inspect_system, service):
    status, body = http_get(inspect_system.http_url(service, "/healthz"))
    assert status == 200, body
    report = json.loads(body)
    assert report["service"] == service
    assert report["status"] == "ok"
    assert report["version"]
    status, body = http_get(inspect_system.http_url(service, "/readyz"))
    assert status == 200, body


# --- grpc.health.v1 -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_check_is_serving(channels, service):
    stub = health_pb2_grpc.HealthStub(channels[service])
    response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_watch_first_message_is_serving(channels, service):
    stub = health_pb2_grpc.HealthStub(channels[service])
    stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
    try:
        first = next(stream)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stream.cancel()


# --- the Gateway's public gRPC API ----------------------------------------------------------------


def test_list_users_through_gateway_with_token(inspect_system, channels, proto_stubs):
    messages = proto_stubs.load("session.v1.session_service_pb2")
    services = proto_stubs.load("session.v1.session_service_pb2_grpc")
    users = services.UserServiceStub(channels["Gateway"])
    response = users.ListUsers(
        messages.ListUsersRequest(), metadata=bearer(inspect_system.token), timeout=CALL_TIMEOUT_S)
    assert len(response.users) >= 1
    admins = [u for u in response.users if u.admin]
    assert admins, f"no administrator among {response.users}"
    assert all(u.id.startswith("usr-") for u in response.users), [u.id for u in response.users]


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-real-token"),), (("authorization", "Basic abc"),)],
    ids=["no-token", "unknown-token", "not-bearer"],
)
def test_list_users_through_gateway_without_valid_token_is_unauthenticated(channels, proto_stubs, metadata):
    messages = proto_stubs.load("session.v1.session_service_pb2")
    services = proto_stubs.load("session.v1.session_service_pb2_grpc")
    users = services.UserServiceStub(channels["Gateway"])
    with pytest.raises(grpc.RpcError) as raised:
        users.ListUsers(messages.ListUsersRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, raised.value.details()


def test_session_through_gateway_create_prompt_subscribe(inspect_system, channels, proto_stubs):
    """CreateSession -> SendPrompt -> Subscribe, as any gRPC client would, until the session's
    turn ends: the demo with the scripted model succeeds; the stream shows every event in order."""
    messages = proto_stubs.load("session.v1.session_service_pb2")
    services = proto_stubs.load("session.v1.session_service_pb2_grpc")
    sessions = services.SessionServiceStub(channels["Gateway"])
    metadata = bearer(inspect_system.token)

    created = sessions.CreateSession(
        messages.CreateSessionRequest(repository="local/demo", title="from python", model="scripted:demo"),
        metadata=metadata, timeout=CALL_TIMEOUT_S)
    session_id = created.session.id
    assert session_id.startswith("ses-0-")
    sent = sessions.SendPrompt(
        messages.SendPromptRequest(session_id=session_id, text="average([]) should be 0: fix it and push"),
        metadata=metadata, timeout=CALL_TIMEOUT_S)
    assert sent.queue_position == 1

    events = []
    stream = sessions.Subscribe(
        messages.SubscribeRequest(session_id=session_id, after_seq=0), metadata=metadata, timeout=30)
    for response in stream:
        events.extend(response.events)
        if any(event.WhichOneof("kind") == "turn_finished" for event in events):
            stream.cancel()
            break
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    kinds = [event.WhichOneof("kind") for event in events]
    assert kinds[:3] == ["session_created", "prompt_queued", "turn_started"], kinds
    finished = events[-1].turn_finished
    assert finished.outcome == 1, finished  # TURN_OUTCOME_SUCCEEDED
    assert "branch_pushed" in kinds

    with pytest.raises(grpc.RpcError) as raised:
        sessions.GetSession(
            messages.GetSessionRequest(session_id="ses-0-01jabcdefghjkmnpqrstvwxyz0"),
            metadata=metadata, timeout=CALL_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()


# --- an internal service, directly --------------------------------------------------------------


def test_model_router_transcribe_without_audio_is_invalid(channels, proto_stubs):
    messages = proto_stubs.load("model.v1.model_service_pb2")
    services = proto_stubs.load("model.v1.model_service_pb2_grpc")
    router = services.ModelRouterServiceStub(channels["ModelRouter"])
    with pytest.raises(grpc.RpcError) as raised:
        router.Transcribe(messages.TranscribeRequest(), timeout=CALL_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert "no audio" in (raised.value.details() or ""), raised.value.details()
