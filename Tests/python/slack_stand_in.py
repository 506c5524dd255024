"""A stand-in for Slack's Web API on 127.0.0.1: `POST /api/<method>` with a JSON body and a bearer
token, answered as Slack does (HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": ...}`,
429 with `Retry-After`). It records every call, keeps the messages posted and updated, and can be
told to answer a method's next calls with a 429 or an error.

Methods: `chat.postMessage`, `chat.update`, `conversations.replies`, `conversations.info`,
`users.info`. Anything else is `{"ok": false, "error": "unknown_method"}`. As Slack does, `chat.*`
takes a JSON body and the read methods take form fields only (JSON arguments are not seen).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Call:
    at: float
    method: str
    body: dict
    authorization: str
    status: int
    answer: dict


class SlackStandIn:
    def __init__(self, token: str, bot_user: str = "UBOT", bot_id: str = "BBOT"):
        self.token = token
        self.bot_user = bot_user
        self.bot_id = bot_id
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.users: dict[str, dict] = {}          # user id -> users.info `user`
        self.channels: dict[str, dict] = {}       # channel id -> conversations.info `channel`
        self.messages: dict[str, list[dict]] = {}  # channel id -> messages, oldest first
        self.scripted: dict[str, list[tuple]] = {}  # method -> answers to give first
        self.counter = itertools.count(1)
        self.page_size = 4  # conversations.replies pages, small so that paging is exercised
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *arguments):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                method = self.path.removeprefix("/api/")
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("application/x-www-form-urlencoded"):
                    body = dict(urllib.parse.parse_qsl(raw.decode()))
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {"unparsed": raw.decode(errors="replace")}
                status, answer, headers = stand_in.answer(method, body, self.headers.get("Authorization", ""),
                                                          self.headers.get("Content-Type", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---------------------------------------------------------------------------------------

    def start(self) -> "SlackStandIn":
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self.counter):06d}"

    def add_user(self, user: str, email: str, name: str, is_bot: bool = False, team: str = "T0001"):
        self.users[user] = {"id": user, "team_id": team, "name": name, "is_bot": is_bot, "deleted": False,
                            "profile": {"email": email, "real_name": name}}

    def add_channel(self, channel: str, name: str):
        self.channels[channel] = {"id": channel, "name": name, "is_channel": True}

    def say(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> dict:
        """A person's message, as Slack would keep it (and send it in an event)."""
        message = {"type": "message", "user": user, "text": text, "ts": self.next_ts()}
        if thread_ts:
            message["thread_ts"] = thread_ts
        with self.lock:
            self.messages.setdefault(channel, []).append(message)
        return message

    def script(self, method: str, *answers: tuple):
        """The next calls of `method` get these answers, in order: ("429", retry_after_seconds)
        or ("error", "channel_not_found")."""
        with self.lock:
            self.scripted.setdefault(method, []).extend(answers)

    def calls_of(self, method: str, **matching) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and all(c.body.get(k) == v for k, v in matching.items())]

    def wait_for(self, predicate, timeout: float = 90, what: str = "a call"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = predicate(list(self.calls))
            if found:
                return found
            time.sleep(0.1)
        with self.lock:
            summary = "\n".join(f"{c.at:.2f} {c.method} {json.dumps(c.body)[:300]} -> {c.status}" for c in self.calls)
        raise AssertionError(f"timed out waiting for {what}; calls so far:\n{summary}")

    # ---------------------------------------------------------------------------------------

    def answer(self, method: str, body: dict, authorization: str, content_type: str):
        with self.lock:
            status, answer, headers = self._answer(method, body, authorization, content_type)
            self.calls.append(Call(time.monotonic(), method, body, authorization, status, answer))
            return status, answer, headers

    def _answer(self, method, body, authorization, content_type):
        if authorization != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        # Write methods take JSON; read methods read only form fields (JSON arguments are
        # ignored by Slack, as if none were sent).
        if method.startswith("chat."):
            if not content_type.startswith("application/json"):
                return 200, {"ok": False, "error": "invalid_form_data"}, {}
        elif not content_type.startswith("application/x-www-form-urlencoded"):
            body = {}
        scripted = self.scripted.get(method)
        if scripted:
            kind, value = scripted.pop(0)
            if kind == "429":
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(value)}
            return 200, {"ok": False, "error": value}, {}
        if method == "users.info":
            user = self.users.get(body.get("user"))
            return (200, {"ok": True, "user": user}, {}) if user else (200, {"ok": False, "error": "user_not_found"}, {})
        if method == "conversations.info":
            channel = self.channels.get(body.get("channel"))
            return ((200, {"ok": True, "channel": channel}, {}) if channel
                    else (200, {"ok": False, "error": "channel_not_found"}, {}))
        if method == "conversations.replies":
            channel, ts = body.get("channel"), body.get("ts")
            thread = [m for m in self.messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts]
            if not thread:
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            # Pages of at most `page_size` (Slack may return fewer than `limit`), oldest first.
            start = int(body.get("cursor") or 0)
            size = min(int(body.get("limit") or 1000), self.page_size)
            page = thread[start:start + size]
            more = start + size < len(thread)
            return 200, {"ok": True, "messages": page, "has_more": more,
                         "response_metadata": {"next_cursor": str(start + size) if more else ""}}, {}
        if method == "chat.postMessage":
            channel = body.get("channel")
            if channel not in self.channels:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if not body.get("text") and not body.get("blocks"):
                return 200, {"ok": False, "error": "no_text"}, {}
            message = {"type": "message", "user": self.bot_user, "bot_id": self.bot_id, "text": body.get("text", ""),
                       "blocks": body.get("blocks", []), "ts": self.next_ts()}
            if body.get("thread_ts"):
                message["thread_ts"] = body["thread_ts"]
            self.messages.setdefault(channel, []).append(message)
            return 200, {"ok": True, "channel": channel, "ts": message["ts"], "message": message}, {}
        if method == "chat.update":
            channel, ts = body.get("channel"), body.get("ts")
            for message in self.messages.get(channel, []):
                if message["ts"] == ts:
                    if message.get("bot_id") != self.bot_id:
                        return 200, {"ok": False, "error": "cant_update_message"}, {}
                    message["text"] = body.get("text", message["text"])
                    message["blocks"] = body.get("blocks", message.get("blocks", []))
                    return 200, {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}, {}
            return 200, {"ok": False, "error": "message_not_found"}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def message(self, channel: str, ts: str) -> dict | None:
        with self.lock:
            return next((dict(m) for m in self.messages.get(channel, []) if m["ts"] == ts), None)
