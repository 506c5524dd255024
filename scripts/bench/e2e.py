"""End-to-end benchmarks against real processes on loopback.

  e2e.ttft  prompt accepted (the POST that queues it has answered) -> first text_delta frame at an
            SSE client that was already connected; scripted model (instant).
  demo      wall time of the demo session and its parts, from its own events.

Prints `bench NAME key=value ...` lines (docs/CONTRACTS.md)."""
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"
BIN = Path(os.environ.get("INSPECT_BIN_DIR", ""))
RUNS = int(os.environ.get("RUNS", "30"))


def free_ports(count):
    ports = []
    for port in random.sample(range(20000, 32768), 2000):
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports")


def start_system(data):
    names = ["GATEWAY_GRPC_PORT", "GATEWAY_HTTP_PORT", "SESSION_GRPC_PORT", "SESSION_ADMIN_PORT", "SANDBOX_GRPC_PORT",
             "SANDBOX_ADMIN_PORT", "MODEL_ROUTER_GRPC_PORT", "MODEL_ROUTER_ADMIN_PORT", "CLASSIFIER_GRPC_PORT",
             "CLASSIFIER_ADMIN_PORT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_") and not k.startswith("OPENAI_")}
    env.update({f"INSPECT_{name}": str(port) for name, port in zip(names, free_ports(len(names)))})
    env["INSPECT_LOG_LEVEL"] = "warning"
    subprocess.run([str(BIN / "inspect"), "up", "--detach", "--data-dir", str(data)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def sse_frames(response):
    frame = {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if frame:
                yield frame
                frame = {}
        elif raw and not raw.startswith(":"):
            field, _, value = raw.partition(": ")
            frame[field] = value


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(names):
    with tempfile.TemporaryDirectory(prefix="inspect-bench-") as directory:
        data = Path(directory)
        env = start_system(data)
        try:
            base = f"http://{LOOPBACK}:{env['INSPECT_GATEWAY_HTTP_PORT']}"
            headers = {"Authorization": "Bearer " + (data / "dev-token").read_text().strip()}
            if "e2e.ttft" in names:
                ttft(base, headers)
            if "demo" in names:
                demo(base, headers)
        finally:
            subprocess.run([str(BIN / "inspect"), "down", "--data-dir", str(data)], stdout=subprocess.DEVNULL)


def ttft(base, headers):
    samples = []
    for _ in range(RUNS):
        session = requests.post(f"{base}/v1/sessions", headers=headers,
                                json={"repository": "local/demo", "model": "scripted:demo"}).json()["session"]["id"]
        first_token = queue.Queue()

        def watch():
            with requests.get(f"{base}/v1/sessions/{session}/events", headers=headers, stream=True, timeout=60) as r:
                for frame in sse_frames(r):
                    if frame.get("event") == "text_delta":
                        first_token.put(time.perf_counter())
                        return

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.05)  # the SSE connection is open before the prompt is sent
        sent = requests.post(f"{base}/v1/sessions/{session}/prompts", headers=headers, json={"text": "fix average"})
        accepted = time.perf_counter()
        assert sent.status_code == 200, sent.text
        samples.append((first_token.get(timeout=60) - accepted) * 1000)
        watcher.join()
    print(f"bench e2e.ttft p50_ms={statistics.median(samples):.1f} p99_ms={percentile(samples, 0.99):.1f} runs={len(samples)}")


def demo(base, headers):
    started = time.perf_counter()
    session = requests.post(f"{base}/v1/sessions", headers=headers, json={
        "repository": "local/demo", "model": "scripted:demo",
        "prompt": "The test test_average_of_nothing_is_zero fails. Make average([]) return 0 and push the fix."}).json()
    session_id = session["session"]["id"]
    events = []
    with requests.get(f"{base}/v1/sessions/{session_id}/events", headers=headers, stream=True, timeout=60) as r:
        for frame in sse_frames(r):
            events.append(json.loads(frame["data"]))
            if frame["event"] == "turn_finished":
                break
    wall = (time.perf_counter() - started) * 1000

    def ms(duration):
        return float(duration.rstrip("s")) * 1000 if duration else 0.0

    statuses = [e["sandboxStatus"] for e in events if "sandboxStatus" in e]
    # `claim`: provisioning until the sandbox is claimed (SYNCING); `sync`: its background sync.
    claimed = next(s for s in statuses if s.get("phase") == "SANDBOX_PHASE_SYNCING")
    ready = next(s for s in statuses if s.get("phase") == "SANDBOX_PHASE_READY")
    tools = [e["toolCall"] for e in events if e.get("toolCall", {}).get("state") in
             ("TOOL_CALL_STATE_SUCCEEDED", "TOOL_CALL_STATE_FAILED")]
    parts = " ".join(f"{call['name']}_ms={ms(call.get('duration')):.1f}" for call in tools)
    finished = events[-1]["turnFinished"]
    print(f"bench demo wall_ms={wall:.1f} turn_ms={ms(finished.get('duration')):.1f} "
          f"claim_ms={ms(claimed['timings'].get('claim')):.1f} sync_ms={ms(ready.get('timings', {}).get('sync')):.1f} "
          f"{parts} outcome={finished['outcome']}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["e2e.ttft", "demo"])
