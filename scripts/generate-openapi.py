#!/usr/bin/env python3
"""Writes the Gateway's OpenAPI 3.1 document (served at /openapi.json) from the route table below
and the protos: every JSON body is a proto message in the protobuf JSON mapping, so its schema is
derived from the message's descriptor (lowerCamelCase names, 64-bit integers as strings or
numbers, enums by name, Timestamp/Duration as strings, bytes as base64).

    scripts/generate-openapi.py           # rewrites Sources/Gateway/HTTP/OpenAPIDocument.swift
    scripts/generate-openapi.py --check   # fails when that file is stale (CI)

Needs grpcio-tools (scripts/setup.sh installs it). `GatewayOpenAPITests` checks that the routes
the Gateway registers and the paths documented here are the same.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Sources/Gateway/HTTP/OpenAPIDocument.swift"
S = "inspect.session.v1."

# (method, path, operationId, summary, request message (body) or None, response: message name,
#  or one of "sse", "websocket", "binary", "text", "json"; path parameters are taken from the path; query
#  parameters listed; auth False for the open routes)
ROUTES = [
    ("get", "/healthz", "health", "Liveness: the process is up.", None, "json", [], False),
    ("get", "/readyz", "ready", "Readiness: SERVING (200) or NOT_SERVING (503).", None, "json", [], False),
    ("get", "/metrics", "metrics", "Prometheus metrics.", None, "text", [], False),
    ("get", "/openapi.json", "openapi", "This document.", None, "json", [], False),
    ("get", "/", "webClient", "The web client (a single page; it asks for a token).", None, "html", [], False),
    ("get", "/sessions/{id}", "webSession", "The web client, on one session.", None, "html", [], False),
    ("get", "/stats", "webStats", "The web client's stats page.", None, "html", [], False),
    ("get", "/app.js", "webScript", "The web client's script.", None, "js", [], False),
    ("get", "/app.css", "webStyle", "The web client's style sheet.", None, "css", [], False),
    ("get", "/v1/me", "getMe", "The authenticated user.", None, S + "User", [], True),
    ("post", "/v1/sessions", "createSession", "Create a session (optionally with its first prompt).",
     S + "CreateSessionRequest", S + "CreateSessionResponse", [], True),
    ("get", "/v1/sessions", "listSessions", "The caller's sessions, newest first.", None,
     S + "ListSessionsResponse",
     [("pageSize", "integer"), ("pageToken", "string"), ("repository", "string"),
      ("parentSessionId", "string"), ("externalKey", "string")], True),
    ("get", "/v1/sessions/{id}", "getSession", "One session with its queued prompts.", None,
     S + "GetSessionResponse", [], True),
    ("post", "/v1/sessions/{id}/prompts", "sendPrompt", "Queue a prompt (runs after the current turn).",
     S + "SendPromptRequest", S + "SendPromptResponse", [], True),
    ("patch", "/v1/sessions/{id}/prompts/{prompt}", "editQueuedPrompt", "Edit a prompt still queued.",
     S + "EditQueuedPromptRequest", S + "EditQueuedPromptResponse", [], True),
    ("delete", "/v1/sessions/{id}/prompts/{prompt}", "cancelQueuedPrompt", "Cancel a prompt still queued.",
     None, S + "CancelQueuedPromptResponse", [], True),
    ("post", "/v1/sessions/{id}/stop", "stopSession", "Stop the running turn (and optionally clear the queue).",
     S + "StopSessionRequest", S + "StopSessionResponse", [], True),
    ("post", "/v1/sessions/{id}/participants", "addParticipant", "Add a participant with a role.",
     S + "AddParticipantRequest", S + "AddParticipantResponse", [], True),
    ("delete", "/v1/sessions/{id}/participants/{user}", "removeParticipant", "Remove a participant.",
     None, S + "RemoveParticipantResponse", [], True),
    ("post", "/v1/sessions/{id}/presence", "updatePresence", "Report the caller's presence.",
     S + "UpdatePresenceRequest", S + "UpdatePresenceResponse", [], True),
    ("post", "/v1/sessions/{id}/tool-calls/{toolCall}/decision", "decideToolCall",
     "Approve or deny a tool call waiting for a decision (optionally remembered as a rule).",
     S + "DecideToolCallRequest", S + "DecideToolCallResponse", [], True),
    ("get", "/v1/sessions/{id}/artifacts", "listArtifacts", "The session's artifacts, oldest first.", None,
     S + "ListArtifactsResponse", [("pageSize", "integer"), ("pageToken", "string"), ("turnId", "string")], True),
    ("get", "/v1/sessions/{id}/artifacts/{artifact}/content", "getArtifactContent",
     "An artifact's content, as its own media type.", None, "binary", [], True),
    ("get", "/v1/sessions/{id}/diff", "getDiff",
     "The session branch's changes against its base, as last pushed: files with line counts and the patch.",
     None, S + "GetDiffResponse", [("maxPatchBytes", "integer")], True),
    ("get", "/v1/sessions/{id}/events", "streamEvents",
     "The session's events as Server-Sent Events (id = seq; resume with Last-Event-ID or after_seq).", None,
     "sse", [("after_seq", "integer")], True),
    ("get", "/v1/sessions/{id}/ws", "streamEventsWebSocket",
     "The session's events over a WebSocket (upgrade; a resume message starts and moves the stream).", None,
     "websocket", [], True),
    ("post", "/v1/transcriptions", "transcribe",
     "A voice prompt: the recording (body, its type in Content-Type) as text, to confirm before sending.",
     "audio", "inspect.model.v1.TranscribeResponse", [("sessionId", "string"), ("language", "string")], True),
    ("post", "/v1/prewarm", "prewarm", "Someone started typing: get a sandbox of the repository ready.",
     S + "PrewarmRequest", S + "PrewarmResponse", [], True),
    ("get", "/v1/stats", "getStats", "Counters for the stats page.", None, S + "GetStatsResponse",
     [("repository", "string"), ("windowSeconds", "integer")], True),
    ("get", "/v1/repositories", "listRepositories", "The registered repositories.", None,
     S + "ListRepositoriesResponse", [], True),
    ("post", "/v1/repositories", "registerRepository", "Register a repository by owner/name (fetches its mirror).",
     S + "RegisterRepositoryRequest", S + "RegisterRepositoryResponse", [], True),
    ("get", "/artifacts/{session}/{artifact}", "getSignedArtifact",
     "An artifact through a signed, expiring link (as in pull request bodies); no token.", None, "binary",
     [("expires", "integer"), ("signature", "string")], False),
    ("post", "/github/webhooks", "githubWebhook",
     "GitHub webhook deliveries (X-Hub-Signature-256 over the raw body; X-GitHub-Event, X-GitHub-Delivery).",
     "webhook", "json", [], False),
    ("post", "/slack/events", "slackEvents",
     "Slack's Events API (X-Slack-Signature, v0 HMAC-SHA256 over the timestamp and raw body): url_verification "
     "is answered with its challenge; event_callback is stored and acted on after the answer.",
     "slack-event", "json", [], False),
    ("post", "/slack/interactions", "slackInteractions",
     "Slack's interactivity requests (a form with one field, payload=<JSON>), signed like events.",
     "slack-form", "json", [], False),
    ("get", "/chrome/updates.xml", "chromeExtensionUpdates",
     "The Chrome extension's update manifest, for managed rollout (INSPECT_CHROME_EXTENSION_DIR); no token.",
     None, "xml", [], False),
    ("get", "/chrome/inspect.crx", "chromeExtensionPackage", "The Chrome extension's signed package; no token.",
     None, "crx", [], False),
]

AUDIO_TYPES = ["audio/webm", "audio/ogg", "audio/wav", "audio/mpeg", "audio/mp4", "audio/flac"]

# The body field each path parameter fills (the path wins): not part of the documented body.
PATH_FIELDS = {"id": "sessionId", "prompt": "promptId", "user": "userId", "toolCall": "toolCallId"}

WELL_KNOWN = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
}

T = descriptor_pb2.FieldDescriptorProto


def descriptors() -> dict[str, descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto]:
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.pb"
        import grpc_tools
        include = Path(grpc_tools.__file__).parent / "_proto"
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"-I{include}",
             "--include_imports", f"--descriptor_set_out={out}", *protos], check=True, cwd=ROOT)
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    types = {}

    def walk(prefix, messages, enums):
        for enum in enums:
            types[f"{prefix}.{enum.name}"] = enum
        for message in messages:
            name = f"{prefix}.{message.name}"
            types[name] = message
            walk(name, message.nested_type, message.enum_type)

    for file in files.file:
        walk("." + file.package, file.message_type, file.enum_type)
    return types


def schema_name(full: str) -> str:
    return full.lstrip(".")


def build_components(types, roots):
    schemas = {}
    pending = [r if r.startswith(".") else "." + r for r in roots]

    def field_schema(field):
        if field.type == T.TYPE_MESSAGE:
            nested = types[field.type_name]
            if getattr(nested, "options", None) and nested.options.map_entry:
                value = next(f for f in nested.field if f.name == "value")
                return {"type": "object", "additionalProperties": field_schema(value)}
            if field.type_name in WELL_KNOWN:
                single = dict(WELL_KNOWN[field.type_name])
            else:
                pending.append(field.type_name)
                single = {"$ref": f"#/components/schemas/{schema_name(field.type_name)}"}
        elif field.type == T.TYPE_ENUM:
            pending.append(field.type_name)
            single = {"$ref": f"#/components/schemas/{schema_name(field.type_name)}"}
        elif field.type in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
            single = {"type": "number"}
        elif field.type in (T.TYPE_UINT64, T.TYPE_FIXED64):
            single = {"type": ["string", "integer"], "pattern": "^[0-9]+$", "minimum": 0}
        elif field.type in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
            single = {"type": ["string", "integer"], "pattern": "^-?[0-9]+$"}
        elif field.type in (T.TYPE_UINT32, T.TYPE_FIXED32):
            single = {"type": "integer", "minimum": 0}
        elif field.type in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
            single = {"type": "integer"}
        elif field.type == T.TYPE_BOOL:
            single = {"type": "boolean"}
        elif field.type == T.TYPE_BYTES:
            single = {"type": "string", "contentEncoding": "base64"}
        else:
            single = {"type": "string"}
        if field.label == T.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    while pending:
        name = pending.pop()
        key = schema_name(name)
        if key in schemas:
            continue
        proto = types[name]
        if isinstance(proto, descriptor_pb2.EnumDescriptorProto):
            # Names in answers; names or numbers accepted in requests.
            schemas[key] = {"anyOf": [{"type": "string", "enum": [v.name for v in proto.value]}, {"type": "integer"}]}
            continue
        schemas[key] = {"type": "object", "properties": {}}  # placeholder against cycles
        properties = {}
        for field in proto.field:
            properties[field.json_name] = field_schema(field)
        # Every field a message has is listed: anything else in a body or an answer is wrong.
        schemas[key] = {"type": "object", "properties": dict(sorted(properties.items())), "additionalProperties": False}
    return schemas


def document(types) -> dict:
    error = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "the gRPC status code name, e.g. NOT_FOUND"},
            "message": {"type": "string"}}}},
    }
    roots = set()
    paths: dict[str, dict] = {}
    for method, path, operation, summary, request, response, query, auth in ROUTES:
        item = paths.setdefault(path, {})
        parameters = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for part in path.split("/") if part.startswith("{")
        ]
        for name, kind in query:
            parameters.append({"name": name, "in": "query", "required": False, "schema": {"type": kind}})
        op = {"operationId": operation, "summary": summary, "responses": {}}
        if parameters:
            op["parameters"] = parameters
        if not auth:
            op["security"] = []
        if request == "webhook":
            op["parameters"] = [
                {"name": "X-GitHub-Event", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "X-GitHub-Delivery", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "X-Hub-Signature-256", "in": "header", "required": True, "schema": {"type": "string"}},
            ]
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        elif request in ("slack-event", "slack-form"):
            op["parameters"] = [
                {"name": "X-Slack-Request-Timestamp", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "X-Slack-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
            ]
            media = "application/json" if request == "slack-event" else "application/x-www-form-urlencoded"
            body = {"type": "object"} if request == "slack-event" else {
                "type": "object", "properties": {"payload": {"type": "string"}}, "required": ["payload"]}
            op["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
        elif request == "audio":
            # The types ModelRouter transcribes (parameters such as `;codecs=opus` allowed).
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": {"type": "string", "contentMediaType": media}}
                for media in AUDIO_TYPES}}
        elif request:
            roots.add(request)
            op["requestBody"] = {"required": False, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{request}"}}}}
        if response == "sse":
            # Each event's data is one SessionEvent in JSON.
            roots.add(S + "SessionEvent")
            # Each event (as SSE tools read it: its fields) carries one SessionEvent as JSON data.
            ok = {"description": "Server-Sent Events: `id: <seq>`, `event: <kind>`, `data: <SessionEvent JSON>`",
                  "content": {"text/event-stream": {"schema": {
                      "type": "object", "additionalProperties": False,
                      "properties": {
                          "id": {"type": "string", "pattern": "^[0-9]+$"},
                          "event": {"type": "string"},
                          "data": {"type": "string", "contentMediaType": "application/json",
                                   "contentSchema": {"$ref": f"#/components/schemas/{S}SessionEvent"}},
                          "retry": {"type": "integer"},
                      }}}}}
        elif response == "websocket":
            ok = None
            op["description"] = (
                "Upgrade with `Connection: Upgrade`, `Upgrade: websocket` (a plain GET is 426). Browsers, which "
                "cannot set headers on a WebSocket, leave out `Authorization` and send the token in the first "
                "message. Client messages are JSON text: `{\"type\":\"resume\",\"afterSeq\":N,\"token\":\"…\"}` "
                "(first within 10 s; later ones move the stream, without a token). Server messages: "
                "`{\"type\":\"subscribed\",\"sessionId\",\"afterSeq\"}`, "
                "`{\"type\":\"events\",\"events\":[SessionEvent JSON…]}` (every event after afterSeq exactly "
                "once, in order), `{\"type\":\"error\",\"error\":{\"code\",\"message\"}}`. Close codes: 1008 no or bad "
                "first message, bad token, unknown session, or too many messages waiting; 1009 a message over "
                "64 KiB; 1011 the upstream broke or the client stopped reading; 1012 SessionService is restarting; "
                "1000 the Gateway is shutting down. After 1000, 1011 or 1012, reconnect and resume after the last "
                "seq you have. Resume messages: five at once, then one a second.")
            op["responses"]["101"] = {"description": "Switching Protocols: the WebSocket conversation above"}
        elif response == "binary":
            ok = {"description": "the artifact's bytes, with its media type",
                  "content": {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}
        elif response in ("html", "js", "css", "xml", "crx"):
            media = {"html": "text/html", "js": "text/javascript", "css": "text/css", "xml": "application/xml",
                     "crx": "application/x-chrome-extension"}[response]
            ok = {"description": media, "content": {media: {"schema": {"type": "string"}}}}
        elif response == "text":
            ok = {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
        elif response == "json":
            ok = {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
        else:
            roots.add(response)
            ok = {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{response}"}}}}
        if operation == "createSession":
            # For stateful clients and tools: the operations that take the new session's id.
            ok["links"] = {
                target: {"operationId": target, "parameters": {"id": "$response.body#/session/id"}}
                for _m, p, target, *_ in ROUTES if p.startswith("/v1/sessions/{id}")
            }
        if operation == "sendPrompt":
            ok["links"] = {
                target: {"operationId": target,
                         "parameters": {"id": "$request.path.id", "prompt": "$response.body#/promptId"}}
                for target in ("editQueuedPrompt", "cancelQueuedPrompt")
            }
        status = "202" if request == "webhook" else "200"
        if ok is not None:
            op["responses"][status] = ok
        if request == "webhook":
            op["responses"]["200"] = {"description": "a delivery seen before",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}
        if path == "/readyz":
            op["responses"]["503"] = {"description": "not serving",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}
        op["responses"]["4XX"] = {"description": "the request was refused; the body says why",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        op["responses"]["5XX"] = {"description": "a dependency is down or failed",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        item[method] = op
    schemas = build_components(types, roots)
    # Fields the path fills are not part of the documented request bodies.
    for method, path, _operation, _summary, request, *_ in ROUTES:
        if request and request not in ("webhook", "audio", "slack-event", "slack-form"):
            filled = {PATH_FIELDS[p[1:-1]] for p in path.split("/") if p.startswith("{") and p[1:-1] in PATH_FIELDS}
            body = dict(schemas[request])
            body["properties"] = {k: v for k, v in body["properties"].items() if k not in filled}
            schemas[request] = body
    schemas["Error"] = error
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Inspect Gateway API",
            "version": "1",
            "description": "The public REST API of Inspect. JSON bodies use the protobuf JSON mapping of the "
                           "inspect.session.v1 messages named in each schema; errors are "
                           "{\"error\": {\"code\": \"<gRPC code name>\", \"message\": \"…\"}}. The same operations "
                           "are offered over gRPC on the Gateway's gRPC port (bearer token in metadata).",
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API token (insp_…)"}},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render(doc: dict) -> str:
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    assert '"""#' not in text
    return (
        "// Generated by scripts/generate-openapi.py from its route table and protos/; do not edit.\n"
        "// Served at GET /openapi.json.\n\n"
        "enum OpenAPIDocument {\n"
        "  static let json = #\"\"\"\n" + text + "\n\"\"\"#\n}\n"
    )


def main() -> int:
    rendered = render(document(descriptors()))
    if "--check" in sys.argv[1:]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != rendered:
            print(f"check-openapi: {OUT.relative_to(ROOT)} is stale; run scripts/generate-openapi.py and commit it",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(rendered)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(ROUTES)} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
