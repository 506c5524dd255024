"""schemathesis hooks for the Gateway's API (loaded through SCHEMATHESIS_HOOKS): bodies for the
audio media types of `POST /v1/transcriptions`, which schemathesis cannot make by itself."""
import io
import wave

import schemathesis
from hypothesis import strategies as st


def _wav(frames: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(frames)
    return out.getvalue()


# A real (short) recording or arbitrary bytes claiming to be one.
_AUDIO = st.one_of(st.binary(min_size=0, max_size=256), st.binary(min_size=2, max_size=64).map(_wav))

for _media in ["audio/webm", "audio/ogg", "audio/wav", "audio/mpeg", "audio/mp4", "audio/flac"]:
    schemathesis.openapi.media_type(_media, _AUDIO)
