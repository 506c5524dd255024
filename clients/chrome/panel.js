// The side panel: signs in to an Inspect Gateway with an API token, picks an element on a page,
// and sends it with a prompt to a new or an existing session, then follows the session's events
// until its turn ends (and shows the pull request or the pushed branch).
"use strict";

const $ = (id) => document.getElementById(id);
const CAPTURE_TYPE = "application/vnd.inspect.element+json";
let settings = { gateway: "", token: "", model: "" };
let capture = null;
let following = null;
let pickedTab = null;
let pullRequest = null;

// ---------------------------------------------------------------------------------------------
// Gateway

async function api(path, options = {}) {
  if (!settings.gateway || !settings.token) throw new Error("Set the Gateway URL and an API token first.");
  const response = await fetch(settings.gateway.replace(/\/+$/, "") + path, {
    method: options.method || "GET",
    headers: {
      Authorization: `Bearer ${settings.token}`,
      ...(options.body ? { "Content-Type": "application/json" } : {}),
    },
    body: options.body ? JSON.stringify(options.body) : undefined,
    signal: options.signal,
  });
  if (options.stream) {
    if (!response.ok) throw new Error(await errorText(response));
    return response;
  }
  const text = await response.text();
  if (!response.ok) throw new Error(errorFrom(text, response.status));
  return text ? JSON.parse(text) : {};
}

async function errorText(response) {
  return errorFrom(await response.text(), response.status);
}

function errorFrom(text, status) {
  try {
    const body = JSON.parse(text);
    if (body.error) return `${body.error.code}: ${body.error.message}`;
  } catch {}
  return `HTTP ${status}`;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
}

// ---------------------------------------------------------------------------------------------
// Settings, the person, repositories and sessions

async function loadSettings() {
  const stored = await chrome.storage.local.get(["gateway", "token", "model"]);
  settings = { gateway: stored.gateway || "", token: stored.token || "", model: stored.model || "" };
  $("gateway").value = settings.gateway;
  $("token").value = settings.token;
  $("model").value = settings.model;
  $("settings").open = !settings.gateway || !settings.token;
}

async function refresh() {
  showError(null);
  try {
    const me = await api("/v1/me");
    $("who").textContent = `signed in as ${me.displayName || me.id}`;
    const repositories = (await api("/v1/repositories")).repositories || [];
    $("repository").replaceChildren(
      ...repositories.map((repository) => new Option(repository.name, repository.name)));
    const sessions = (await api("/v1/sessions?pageSize=20")).sessions || [];
    $("session").replaceChildren(
      new Option("New session", ""),
      ...sessions.map((session) => new Option(`${session.title || session.id} (${session.repository?.fullName || ""})`, session.id)));
  } catch (error) {
    $("who").textContent = "";
    showError(error);
  }
}

// ---------------------------------------------------------------------------------------------
// Pages and the picker

async function listTabs() {
  const tabs = (await chrome.tabs.query({})).filter((tab) => /^https?:/.test(tab.url || ""));
  const [active] = await chrome.tabs.query({ active: true, lastFocusedWindow: true });
  $("tab").replaceChildren(...tabs.map((tab) => {
    const option = new Option(`${tab.title || tab.url} — ${tab.url}`, String(tab.id));
    option.selected = active && tab.id === active.id;
    return option;
  }));
}

async function pick() {
  showError(null);
  const tabId = Number($("tab").value);
  if (!tabId) return showError(new Error("Open the page to pick from in a tab first."));
  // A picker left on in another tab is turned off first.
  if (pickedTab && pickedTab !== tabId) chrome.tabs.sendMessage(pickedTab, { type: "inspect:cancel" }).catch(() => {});
  pickedTab = tabId;
  const ask = () => chrome.tabs.sendMessage(tabId, { type: "inspect:pick" });
  // React's fibres are visible only in the page's own world: the bridge goes there now, when the
  // person picks, not into every page. (Chrome runs a file once per page whatever the world, so
  // capture.js cannot also be a main-world content script of the manifest.)
  await chrome.scripting.executeScript({ target: { tabId }, files: ["capture.js", "react-bridge.js"], world: "MAIN" });
  try {
    await ask();
  } catch {
    // A tab opened before the extension was installed has no content scripts yet.
    await chrome.scripting.executeScript({ target: { tabId }, files: ["capture.js", "picker.js"] });
    await ask();
  }
  $("pick-status").textContent = "Click an element on the page (Esc cancels).";
  await chrome.tabs.update(tabId, { active: true });
}

function showCapture(captured) {
  capture = captured;
  $("captured").hidden = false;
  $("pick-status").textContent = "";
  const bytes = JSON.stringify(captured).length;
  const omitted = captured.truncated?.domNodesOmitted || 0;
  $("capture-summary").textContent =
    `<${captured.dom?.tag || "?"}> ${captured.selector} · ${captured.rect.width}×${captured.rect.height} · ` +
    `${(bytes / 1024).toFixed(1)} KiB${omitted ? ` · ${omitted} elements left out (cap ${captured.limits.domNodes})` : ""}`;
  const components = captured.react?.components || [];
  $("components").replaceChildren(...components.slice(0, 8).map((component) => {
    const item = document.createElement("li");
    const where = component.source ? ` — ${component.source.fileName}:${component.source.lineNumber}` : "";
    item.textContent = `${component.name}${where}`;
    return item;
  }));
}

// ---------------------------------------------------------------------------------------------
// Sending and following

function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function send(event) {
  event.preventDefault();
  showError(null);
  const text = $("prompt").value.trim();
  if (!text) return;
  $("send").disabled = true;
  try {
    let sessionId = $("session").value;
    if (!sessionId) {
      const repository = $("repository").value;
      if (!repository) throw new Error("Register a repository first (inspect repos add owner/name).");
      const created = await api("/v1/sessions", {
        method: "POST",
        body: { repository, client: "chrome", ...(settings.model ? { model: settings.model } : {}) },
      });
      sessionId = created.session.id;
    }
    const attachments = capture
      ? [{ name: "element.json", mediaType: CAPTURE_TYPE, data: base64(JSON.stringify(capture)) }]
      : [];
    const sent = await api(`/v1/sessions/${encodeURIComponent(sessionId)}/prompts`, {
      method: "POST", body: { text, client: "chrome", attachments, idempotencyKey: crypto.randomUUID() },
    });
    $("prompt").value = "";
    // The capture went with this prompt only.
    capture = null;
    $("captured").hidden = true;
    await chrome.storage.session.remove("lastCapture");
    // Later prompts from the panel go to this session unless another is chosen.
    const select = $("session");
    if (![...select.options].some((option) => option.value === sessionId)) {
      select.add(new Option(`New: ${sessionId}`, sessionId), 1);
    }
    select.value = sessionId;
    follow(sessionId, sent.promptId, Number(sent.seq || 0));
  } catch (error) {
    showError(error);
  } finally {
    $("send").disabled = false;
  }
}

function note(text) {
  const item = document.createElement("li");
  item.textContent = text;
  $("events").append(item);
  item.scrollIntoView({ block: "nearest" });
}

// Reads the session's event stream (SSE over fetch, so that the token goes in a header) from
// just before the prompt was queued, and shows the turn that answers that prompt until it ends.
async function follow(sessionId, promptId, afterSeq) {
  if (following) following.abort();
  following = new AbortController();
  pullRequest = null;
  $("progress").hidden = false;
  $("events").replaceChildren();
  $("outcome").textContent = "";
  const link = $("session-link");
  link.href = `${settings.gateway.replace(/\/+$/, "")}/sessions/${sessionId}`;
  link.textContent = `Session ${sessionId}`;
  let turnId = null;
  try {
    // The session's pull request, if an earlier turn opened one (later pushes update it).
    const current = await api(`/v1/sessions/${encodeURIComponent(sessionId)}`);
    pullRequest = current.session?.pullRequest?.url || null;
    const response = await api(
      `/v1/sessions/${encodeURIComponent(sessionId)}/events?after_seq=${Math.max(0, afterSeq - 1)}`,
      { stream: true, signal: following.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = /^event: ?(.*)$/m.exec(frame)?.[1];
        const data = frame.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
        if (!kind || !data) continue;
        const event = JSON.parse(data);
        if (kind === "turn_started" && !turnId && (event.turnStarted.promptIds || []).includes(promptId)) {
          turnId = event.turnStarted.turnId;
        }
        if (!turnId || (event.turnId && event.turnId !== turnId)) continue;
        if (show(kind, event)) {
          following.abort();
          return;
        }
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  }
}

// One event in words; true when the turn is over.
function show(kind, event) {
  switch (kind) {
    case "turn_started":
      note("Started");
      return false;
    case "tool_call": {
      const call = event.toolCall;
      if (call.state === "TOOL_CALL_STATE_RUNNING") note(`Running ${call.name}`);
      if (call.state === "TOOL_CALL_STATE_FAILED") note(`${call.name} failed: ${call.error || ""}`);
      return false;
    }
    case "branch_pushed":
      note(`Pushed ${event.branchPushed.branch}`);
      return false;
    case "pull_request":
      if (event.pullRequest.url) pullRequest = event.pullRequest.url;
      return false;
    case "turn_finished": {
      const finished = event.turnFinished;
      const outcome = $("outcome");
      outcome.replaceChildren();
      if (finished.outcome === "TURN_OUTCOME_SUCCEEDED") {
        outcome.append("Done. ");
        if (pullRequest) {
          const a = document.createElement("a");
          a.href = pullRequest;
          a.target = "_blank";
          a.textContent = "Pull request";
          outcome.append(a);
        }
      } else {
        outcome.append(`${finished.outcome.replace("TURN_OUTCOME_", "").toLowerCase()}: ${finished.reason || ""}`);
      }
      return true;
    }
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------

chrome.runtime.onMessage.addListener((message) => {
  if (message.type === "inspect:captured") showCapture(message.capture);
  if (message.type === "inspect:cancelled") $("pick-status").textContent = "Cancelled.";
});

$("settings-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const gateway = $("gateway").value.trim();
  let url;
  try {
    url = new URL(gateway);
  } catch {
    return showError(new Error("The Gateway URL is not a URL."));
  }
  // The token goes with every request: only over https, except to this machine.
  if (url.protocol !== "https:" && !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    return showError(new Error("Use an https:// Gateway URL (plain http only to 127.0.0.1 or localhost)."));
  }
  settings.gateway = gateway;
  settings.token = $("token").value.trim();
  settings.model = $("model").value.trim();
  await chrome.storage.local.set({ gateway: settings.gateway, token: settings.token, model: settings.model });
  $("settings").open = false;
  await refresh();
});
$("pick").addEventListener("click", () => pick().catch(showError));
$("ask").addEventListener("submit", send);
$("tab").addEventListener("focus", () => listTabs().catch(showError));

(async () => {
  await loadSettings();
  await listTabs();
  const stored = await chrome.storage.session.get("lastCapture");
  if (stored.lastCapture) showCapture(stored.lastCapture.capture);
  if (settings.gateway && settings.token) await refresh();
})();
