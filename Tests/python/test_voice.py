"""Voice prompts: the web client records with MediaRecorder (chromium's fake microphone), the
Gateway's `POST /v1/transcriptions` hands the recording to ModelRouter's `Transcribe`, which
posts it to an OpenAI-compatible `/v1/audio/transcriptions` (a stand-in here, speaking that
wire format), and the text lands in the prompt box for the person to check and send."""
from __future__ import annotations

import email.parser
import email.policy
import http.server
import io
import json
import math
import struct
import threading
import wave

import pytest
import requests
from selenium.webdriver.common.by import By

from conftest import LOOPBACK, start_inspect
from test_sse import read_frames
from test_web_ui import browser, new_user, shot, sign_in, text_of, wait

TIMEOUT_S = 30
SPOKEN = "Make the save button blue"


class TranscriptionStandIn(http.server.ThreadingHTTPServer):
    """`POST /v1/audio/transcriptions` as OpenAI answers it (`verbose_json`); it records each
    upload's fields and file."""

    def __init__(self):
        super().__init__((LOOPBACK, 0), TranscriptionHandler)
        self.uploads: list[dict] = []

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/v1"


class TranscriptionHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *arguments):  # quiet
        pass

    def do_POST(self):
        if self.path != "/v1/audio/transcriptions":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        upload = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                upload["file"] = part.get_payload(decode=True)
                upload["filename"] = part.get_filename()
                upload["content_type"] = part.get_content_type()
            else:
                upload[name] = part.get_content().strip()
        self.server.uploads.append(upload)
        answer = json.dumps({"text": SPOKEN, "language": "english", "duration": 1.5}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def stand_in():
    server = TranscriptionStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def voice_system(tmp_path_factory, stand_in):
    with start_inspect(tmp_path_factory, {"OPENAI_BASE_URL": stand_in.base_url}) as system:
        yield system


def wav_bytes(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000))) for i in range(int(16000 * seconds))))
    return out.getvalue()


def transcribe(system, body: bytes, content_type: str | None, query: str = "") -> requests.Response:
    headers = {"Authorization": f"Bearer {system.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    return requests.post(system.http_url("Gateway", f"/v1/transcriptions{query}"), headers=headers, data=body,
                         timeout=TIMEOUT_S)


def new_session(system) -> str:
    created = requests.post(
        system.http_url("Gateway", "/v1/sessions"), headers={"Authorization": f"Bearer {system.token}"},
        json={"repository": "local/demo", "client": "web"}, timeout=TIMEOUT_S)
    assert created.status_code == 200, created.text
    return created.json()["session"]["id"]


def test_transcription_over_rest(voice_system, stand_in):
    audio = wav_bytes()
    session_id = new_session(voice_system)
    answered = transcribe(voice_system, audio, "audio/wav", f"?sessionId={session_id}&language=en-US")
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["text"] == SPOKEN
    assert body["language"] == "english"
    assert body["duration"] == "1.500s"
    upload = stand_in.uploads[-1]
    # The recording reached the provider byte for byte, named so it knows the format.
    assert upload["file"] == audio
    assert upload["content_type"] == "audio/wav" and upload["filename"] == "audio.wav"
    assert upload["response_format"] == "verbose_json" and upload["language"] == "en"


def test_transcription_bad_input(voice_system, inspect_system, stand_in):
    uploads = len(stand_in.uploads)
    for body, content_type, status, words in [
        (wav_bytes(), None, 415, "Content-Type"),
        (b"{}", "application/json", 415, "application/json"),
        (b"", "audio/wav", 400, "empty"),
        (b"\x00" * 64, "audio/x-unknown", 400, "cannot be transcribed"),
        (b"\x00" * ((25 << 20) + 1), "audio/wav", 413, ""),
    ]:
        refused = transcribe(voice_system, body, content_type)
        assert refused.status_code == status, (content_type, refused.text)
        assert words in refused.json()["error"]["message"], refused.text
    # A session that is not the caller's (or does not exist) is not charged, nor one they only watch.
    missing = transcribe(voice_system, wav_bytes(), "audio/wav", "?sessionId=ses-0-01jabcdefghjkmnpqrstvwxyz0")
    assert missing.status_code == 404
    viewer_id, viewer_token = new_user(voice_system, "Viewer Voice")
    watched = new_session(voice_system)
    added = requests.post(
        voice_system.http_url("Gateway", f"/v1/sessions/{watched}/participants"),
        headers={"Authorization": f"Bearer {voice_system.token}"},
        json={"userId": viewer_id, "role": "ROLE_VIEWER"}, timeout=TIMEOUT_S)
    assert added.status_code == 200, added.text
    as_viewer = requests.post(
        voice_system.http_url("Gateway", f"/v1/transcriptions?sessionId={watched}"), data=wav_bytes(),
        headers={"Authorization": f"Bearer {viewer_token}", "Content-Type": "audio/wav"}, timeout=TIMEOUT_S)
    assert as_viewer.status_code == 403 and as_viewer.json()["error"]["code"] == "PERMISSION_DENIED", as_viewer.text
    unauthenticated = requests.post(voice_system.http_url("Gateway", "/v1/transcriptions"), data=wav_bytes(),
                                    headers={"Content-Type": "audio/wav"}, timeout=TIMEOUT_S)
    assert unauthenticated.status_code == 401
    assert len(stand_in.uploads) == uploads, "no refused request reached the provider"

    # Without a provider that transcribes, the Gateway says how to configure one.
    unconfigured = transcribe(inspect_system, wav_bytes(), "audio/wav")
    assert unconfigured.status_code == 412, unconfigured.text
    assert unconfigured.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert "OPENAI_BASE_URL" in unconfigured.json()["error"]["message"]


def test_voice_prompt_in_the_browser(voice_system, stand_in):
    session_id = new_session(voice_system)
    driver = browser()
    try:
        sign_in(driver, voice_system, voice_system.token, f"/sessions/{session_id}")
        wait(driver, lambda d: d.find_elements(By.ID, "voice"), message="the voice button")
        uploads = len(stand_in.uploads)
        driver.find_element(By.ID, "voice").click()
        wait(driver, lambda d: "Recording" in text_of(d, "#voice-note"), message="recording")
        driver.execute_script("return new Promise((resolve) => setTimeout(resolve, 1200))")
        driver.find_element(By.ID, "voice").click()
        wait(driver, lambda d: d.find_element(By.ID, "prompt").get_attribute("value") == SPOKEN,
             message=f"the transcript in the prompt box (note: {text_of(driver, '#voice-note')})")
        assert "check the text" in text_of(driver, "#voice-note")
        shot(driver, "voice-prompt")
        # The browser's recording went up as WebM audio with something in it.
        upload = stand_in.uploads[uploads]
        assert upload["content_type"] in ("audio/webm", "video/webm"), upload["content_type"]
        assert len(upload["file"]) > 1000 and upload["file"][:4] == b"\x1a\x45\xdf\xa3"  # EBML, WebM's header

        # Nothing is sent until the person confirms; then it is a voice prompt.
        assert SPOKEN not in text_of(driver, "#log")
        driver.find_element(By.ID, "send").click()
        wait(driver, lambda d: SPOKEN in text_of(d, "#log"), message="the sent prompt")
    finally:
        driver.quit()
    with requests.get(
            voice_system.http_url("Gateway", f"/v1/sessions/{session_id}/events"),
            headers={"Authorization": f"Bearer {voice_system.token}"}, stream=True, timeout=TIMEOUT_S) as events:
        frames = read_frames(events, 50, until="prompt_queued")
    assert frames[-1]["event"] == "prompt_queued", frames
    queued = json.loads(frames[-1]["data"])["promptQueued"]
    assert queued["text"] == SPOKEN and queued["client"] == "voice"
