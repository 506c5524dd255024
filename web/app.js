// Inspect's web client: no build step, nothing loaded from elsewhere. It talks to the Gateway's
// REST API with the API token kept in this browser (localStorage), and follows a session's
// events over SSE read with fetch (so the token travels in a header, never in a URL). Events
// carry a gap-free seq: after a dropped connection it resumes with Last-Event-ID and skips any
// seq it has already shown, so no line is lost or repeated.
"use strict";

const TOKEN_KEY = "inspect.token";
const main = document.getElementById("main");
let current = null; // the view on screen: { close() }

// ---------------------------------------------------------------------------------------------
// Helpers

/** Builds an element; strings become text nodes (data is never parsed as HTML). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a node's children, with el()'s rules (arrays flattened, null and false skipped). */
function fill(node, ...children) {
  node.replaceChildren(...el("span", {}, ...children).childNodes);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const token = () => localStorage.getItem(TOKEN_KEY) || "";
const shortState = (value, prefix) => (value || "").replace(prefix, "") || "UNKNOWN";

class APIError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** Calls the REST API; throws APIError with the Gateway's error code and message. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = {}; }
  if (!response.ok) {
    const error = data.error || { code: `HTTP_${response.status}`, message: text };
    if (response.status === 401) showLogin(error.message);
    throw new APIError(response.status, error.code, error.message);
  }
  return data;
}

const INLINE_IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/**
 * A button that records a voice prompt (MediaRecorder) until clicked again, has the Gateway
 * transcribe it, and puts the text into `textarea` for the person to check and send. `spoken()`
 * is called once text arrived, so the prompt can be sent as a voice prompt.
 */
function voiceButton(textarea, note, sessionID, spoken) {
  const idle = "● Speak";
  const button = el("button", { type: "button", class: "secondary voice", title: "Record a prompt" }, idle);
  let recorder = null;
  let stream = null;
  let starting = false;
  let released = false;
  button.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    if (starting) return;
    note.textContent = "";
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      note.textContent = "This browser cannot record audio here.";
      return;
    }
    starting = true;
    button.disabled = true;
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
    catch (failure) { note.textContent = `No microphone: ${failure.message}`; return; }
    finally { starting = false; button.disabled = false; }
    if (released) { for (const track of stream.getTracks()) track.stop(); return; }
    const chunks = [];
    const active = new MediaRecorder(stream);
    recorder = active;
    active.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
    active.onstop = async () => {
      for (const track of stream.getTracks()) track.stop();
      recorder = null;
      button.textContent = idle;
      if (active.discarded) return;
      button.disabled = true;
      note.textContent = "Transcribing…";
      const type = active.mimeType || "audio/webm";
      try {
        const query = sessionID ? `?sessionId=${encodeURIComponent(sessionID)}` : "";
        const response = await fetch(`/v1/transcriptions${query}`, {
          method: "POST", headers: { Authorization: `Bearer ${token()}`, "Content-Type": type },
          body: new Blob(chunks, { type }),
        });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`);
        const text = (body.text || "").trim();
        if (!text) throw new Error("nothing was heard");
        textarea.value = textarea.value.trim() ? `${textarea.value.trim()} ${text}` : text;
        textarea.focus();
        spoken();
        note.textContent = "Transcribed: check the text, then send it.";
      } catch (failure) {
        note.textContent = `Transcription failed: ${failure.message}`;
      }
      button.disabled = false;
    };
    active.start();
    button.textContent = "■ Stop recording";
    note.textContent = "Recording… click again to stop.";
  });
  /** Leaving the page: the microphone goes off and nothing is sent. */
  button.release = () => {
    released = true;
    if (recorder) { recorder.discarded = true; recorder.stop(); }
    else if (stream) for (const track of stream.getTracks()) track.stop();
  };
  return button;
}

/**
 * An artifact's bytes as an object URL (fetched with the token). Only the image types above keep
 * their type; anything else becomes plain text, so no artifact can run as this page's origin.
 */
async function artifactURL(sessionID, artifact) {
  const response = await fetch(`/v1/sessions/${sessionID}/artifacts/${artifact.id}/content`, {
    headers: { Authorization: `Bearer ${token()}` },
  });
  if (!response.ok) throw new Error(`artifact ${artifact.id}: HTTP ${response.status}`);
  const type = INLINE_IMAGES.includes(artifact.mediaType) ? artifact.mediaType : "text/plain";
  return URL.createObjectURL(new Blob([await response.arrayBuffer()], { type }));
}

function decodeBase64(text, decoder) {
  try {
    const bytes = Uint8Array.from(atob(text || ""), (c) => c.charCodeAt(0));
    return decoder.decode(bytes, { stream: true });
  } catch { return ""; }
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

// ---------------------------------------------------------------------------------------------
// Sign-in and navigation

function showLogin(reason) {
  if (current) current.close();
  current = null;
  const form = document.getElementById("login").content.cloneNode(true);
  show(form);
  if (reason) document.getElementById("login-error").textContent = reason;
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    start();
  });
}

function navigate(path) {
  history.pushState({}, "", path);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", () => route());

function route() {
  if (current) current.close();
  current = null;
  if (!token()) return showLogin();
  const path = location.pathname;
  const session = path.match(/^\/sessions\/([a-z0-9-]+)$/);
  if (path === "/stats") current = statsView();
  else if (session) current = sessionView(session[1]);
  else current = listView();
}

async function start() {
  if (!token()) return showLogin();
  try {
    const me = await api("GET", "/v1/me");
    document.getElementById("me").textContent = me.displayName || me.id;
    route();
  } catch (error) {
    if (!(error instanceof APIError && error.status === 401)) show(el("p", { class: "error" }, String(error.message)));
  }
}

// ---------------------------------------------------------------------------------------------
// The session list (refreshed every 2 s) and the new-session form

function listView() {
  let closed = false;
  const rows = el("tbody");
  const error = el("p", { class: "error" });
  const repositories = el("datalist", { id: "repositories" });
  const firstPrompt = el("textarea", { id: "first-prompt", name: "prompt", placeholder: "What should change?" });
  const firstNote = el("span", { class: "muted", id: "first-voice-note" });
  let spokenFirst = false;
  const firstVoice = voiceButton(firstPrompt, firstNote, "", () => { spokenFirst = true; });
  firstVoice.id = "first-voice";
  const form = el("form", { class: "card", id: "new-session" },
    el("h2", {}, "New session"),
    el("div", { class: "row" },
      el("input", { id: "repository", name: "repository", placeholder: "owner/name", list: "repositories", required: true, class: "grow" }),
      el("input", { id: "model", name: "model", placeholder: "model (optional)", class: "grow" })),
    repositories,
    el("p", {}, firstPrompt),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Start"), firstVoice, firstNote), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const created = await api("POST", "/v1/sessions", {
        repository: form.repository.value.trim(), model: form.model.value.trim(), prompt: form.prompt.value,
        client: spokenFirst ? "voice" : "web",
      });
      navigate(`/sessions/${created.session.id}`);
    } catch (failure) { error.textContent = failure.message; }
  });
  show(form, el("div", { class: "card" }, el("h2", {}, "Sessions"),
    el("table", { id: "sessions" }, el("thead", {}, el("tr", {}, el("th", {}, "Session"), el("th", {}, "State"),
      el("th", { class: "hide-narrow" }, "Repository"))), rows)));

  api("GET", "/v1/repositories").then((listed) => {
    repositories.replaceChildren(...(listed.repositories || []).map((repo) => el("option", { value: repo.name })));
  }).catch(() => {});

  (async () => {
    while (!closed) {
      try {
        const listed = await api("GET", "/v1/sessions?pageSize=50");
        if (closed) return;
        rows.replaceChildren(...(listed.sessions || []).map((session) => el("tr", { "data-session": session.id },
          el("td", {}, el("a", { href: `/sessions/${session.id}`, "data-link": true }, session.title || session.id)),
          el("td", {}, el("span", { class: `state ${shortState(session.state, "SESSION_STATE_")}` },
            shortState(session.state, "SESSION_STATE_").toLowerCase()),
            session.queuedPrompts ? ` ${session.queuedPrompts} queued` : ""),
          el("td", { class: "hide-narrow" }, session.repository ? session.repository.fullName : ""))));
      } catch (failure) { if (failure.status === 401) return; }
      await sleep(2000);
    }
  })();
  return { close() { closed = true; firstVoice.release(); } };
}

// ---------------------------------------------------------------------------------------------
// A session, live

function sessionView(id) {
  const view = {
    closed: false, lastSeq: 0, connection: null, reconnects: 0, skipped: 0,
    tools: new Map(), prompts: new Map(), live: null, urls: [],
    close() {
      this.closed = true;
      if (this.release) this.release();
      if (this.connection) this.connection.abort();
      for (const url of this.urls) URL.revokeObjectURL(url);
    },
  };
  // For tests and troubleshooting: drop the stream (it reconnects and resumes by itself).
  window.inspectSession = {
    view,
    dropConnection() { if (view.connection) view.connection.abort(); },
  };

  const title = el("h1", { id: "title" }, id);
  const meta = el("p", { class: "muted", id: "meta" });
  const status = el("span", { id: "connection", class: "muted" }, "connecting…");
  const people = el("p", { id: "participants", class: "muted" });
  const typing = el("p", { id: "typing", class: "muted" });
  const log = el("div", { class: "log", id: "log" });
  const queue = el("ol", { class: "queue", id: "queue" });
  const error = el("p", { class: "error", id: "error" });
  const text = el("textarea", { id: "prompt", placeholder: "Ask for a change, or a follow-up (queued while a turn runs)" });
  const send = el("button", { id: "send", type: "submit" }, "Send");
  const stop = el("button", { id: "stop", type: "button", class: "danger" }, "Stop");
  const voiceNote = el("p", { class: "muted", id: "voice-note" });
  let spoken = false;
  const voice = voiceButton(text, voiceNote, id, () => { spoken = true; });
  voice.id = "voice";
  view.release = voice.release;
  const form = el("form", { class: "card", id: "prompt-form" }, text,
    el("div", { class: "row" }, send, voice, stop, status), voiceNote, error);

  const diffSummary = el("summary", { id: "diff-summary" }, "Changes: nothing pushed yet");
  const diffFiles = el("ul", { class: "files", id: "diff-files" });
  const diffPatch = el("pre", { class: "patch", id: "diff-patch" });
  const diff = el("details", { class: "card diff", id: "diff" }, diffSummary, diffFiles, diffPatch);

  show(el("div", { class: "card" }, title, meta, people, typing), log, diff,
    el("div", { class: "card" }, el("h3", {}, "Queued"), queue), form);

  let lastTyping = 0;
  let lastPrewarm = 0;
  text.addEventListener("input", () => {
    const now = Date.now();
    if (now - lastTyping > 3000) {
      lastTyping = now;
      api("POST", `/v1/sessions/${id}/presence`, { state: "PRESENCE_STATE_TYPING", client: "web" }).catch(() => {});
    }
    if (now - lastPrewarm > 30000) {
      lastPrewarm = now;
      api("POST", "/v1/prewarm", { sessionId: id }).catch(() => {});
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    error.textContent = "";
    send.disabled = true;
    try {
      await api("POST", `/v1/sessions/${id}/prompts`, { text: text.value, client: spoken ? "voice" : "web" });
      text.value = "";
      spoken = false;
      voiceNote.textContent = "";
    } catch (failure) { error.textContent = failure.message; }
    send.disabled = false;
  });
  stop.addEventListener("click", async () => {
    error.textContent = "";
    try { await api("POST", `/v1/sessions/${id}/stop`, { reason: "stopped from the web" }); }
    catch (failure) { error.textContent = failure.message; }
  });

  // One refresh at a time; events during one ask for one more, so the newest state always wins.
  let refreshing = false;
  let again = false;
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    do {
      again = false;
      await refreshOnce();
    } while (again && !view.closed);
    refreshing = false;
  }

  async function refreshOnce() {
    if (view.closed) return;
    try {
      const got = await api("GET", `/v1/sessions/${id}`);
      const session = got.session;
      title.textContent = session.title || session.id;
      const pr = session.pullRequest && /^https?:\/\//.test(session.pullRequest.url || "")
        ? el("a", { href: session.pullRequest.url, id: "pull-request" }, `PR #${session.pullRequest.number} (${shortState(session.pullRequest.state, "PULL_REQUEST_STATE_").toLowerCase()})`)
        : null;
      fill(meta, `${session.repository ? session.repository.fullName : ""} · ${session.branch} · `,
        el("span", { class: `state ${shortState(session.state, "SESSION_STATE_")}`, id: "state" },
          shortState(session.state, "SESSION_STATE_").toLowerCase()), pr ? " · " : "", pr);
      fill(people, "People: ", (session.participants || []).map((p, index) =>
        el("span", { class: "participant" }, index ? ", " : "", p.user ? p.user.displayName : p.userId, ` (${shortState(p.role, "ROLE_").toLowerCase()})`)));
      queue.replaceChildren(...(got.queuedPrompts || []).map((prompt) => el("li", { "data-prompt": prompt.id },
        el("span", { class: "who" }, prompt.author ? prompt.author.displayName : ""), " ", prompt.text, " ",
        el("button", { type: "button", class: "secondary edit", onclick: async () => {
          const edited = window.prompt("Edit the queued prompt", prompt.text);
          if (edited === null) return;
          try { await api("PATCH", `/v1/sessions/${id}/prompts/${prompt.id}`, { text: edited }); refresh(); }
          catch (failure) { error.textContent = failure.message; }
        } }, "Edit"), " ",
        el("button", { type: "button", class: "secondary cancel", onclick: async () => {
          try { await api("DELETE", `/v1/sessions/${id}/prompts/${prompt.id}`); refresh(); }
          catch (failure) { error.textContent = failure.message; }
        } }, "Cancel"))));
      stop.disabled = !["SESSION_STATE_RUNNING", "SESSION_STATE_QUEUED"].includes(session.state);
    } catch (failure) {
      if (failure.status === 404 && !view.closed) show(el("p", { class: "error" }, `No session ${id} (or it is not yours).`));
    }
  }

  // The branch's changes against its base, as last pushed; loaded again after every push (one
  // load at a time, and one more at most however many pushes come meanwhile, as in a replay).
  let diffLoads = Promise.resolve();
  let diffQueued = false;
  function loadDiff() {
    if (diffQueued) return diffLoads;
    diffQueued = true;
    diffLoads = diffLoads.then(async () => {
      diffQueued = false;
      if (view.closed) return;
      try {
        const got = await api("GET", `/v1/sessions/${id}/diff`);
        const changes = got.diff || {};
        const files = changes.files || [];
        if (!changes.headCommit) {
          diffSummary.textContent = "Changes: nothing pushed yet";
        } else {
          const added = files.reduce((sum, file) => sum + (file.additions || 0), 0);
          const removed = files.reduce((sum, file) => sum + (file.deletions || 0), 0);
          diffSummary.textContent = `Changes: ${files.length} file${files.length === 1 ? "" : "s"}, +${added} −${removed} against ${got.baseBranch}`;
        }
        diffFiles.replaceChildren(...files.map((file) => el("li", { "data-path": file.path },
          el("span", { class: "mono" }, file.oldPath ? `${file.oldPath} → ${file.path}` : file.path), " ",
          el("span", { class: "muted" }, file.binary ? `${file.status || "modified"}, binary` : `${file.status || "modified"} +${file.additions || 0} −${file.deletions || 0}`))));
        diffPatch.replaceChildren(...(changes.patch || "").split("\n").map((text) => {
          const kind = text.startsWith("+++") || text.startsWith("---") || text.startsWith("diff ") ? "file"
            : text.startsWith("@@") ? "hunk" : text.startsWith("+") ? "add" : text.startsWith("-") ? "del" : "";
          return el("span", { class: kind }, text + "\n");
        }));
        if (changes.filesTruncated) diffFiles.append(el("li", { class: "muted" }, `… and ${changes.filesTruncated} more files`));
        if (changes.truncated) diffPatch.append(el("span", { class: "muted" }, "… (cut: the patch is larger than shown)\n"));
      } catch (failure) {
        diffSummary.textContent = `Changes: ${failure.message}`;
      }
    });
    return diffLoads;
  }
  loadDiff();

  function line(kind, ...children) {
    const node = el("div", { class: `msg ${kind}` }, ...children);
    log.append(node);
    return node;
  }

  function tool(call) {
    let entry = view.tools.get(call.toolCallId);
    if (!entry) {
      const state = el("span", { class: "tool-state" });
      const timing = el("span", { class: "muted" });
      const output = el("pre", { class: "output" });
      const details = el("details", { class: "tool", "data-tool": call.toolCallId },
        el("summary", {}, el("b", {}, call.name || "tool"), state, timing), output);
      log.append(details);
      const decide = el("span", { class: "decide" });
      details.querySelector("summary").append(decide);
      entry = { details, state, timing, output, decide, name: call.name, decoder: new TextDecoder() };
      view.tools.set(call.toolCallId, entry);
    }
    // A call waiting for a person: approve or deny it here.
    entry.decide.replaceChildren();
    if (call.awaitingApproval) {
      const answer = (approved) => async (event) => {
        event.preventDefault();
        try {
          await api("POST", `/v1/sessions/${id}/tool-calls/${call.toolCallId}/decision`, { approved });
          entry.decide.replaceChildren();
        } catch (failure) { error.textContent = failure.message; }
      };
      entry.decide.append(el("button", { type: "button", class: "approve", onclick: answer(true) }, "Approve"), " ",
        el("button", { type: "button", class: "secondary deny", onclick: answer(false) }, "Deny"));
    }
    const state = shortState(call.state, "TOOL_CALL_STATE_");
    entry.state.textContent = call.awaitingApproval ? "AWAITING APPROVAL" : state;
    entry.state.className = `tool-state ${state}`;
    if (call.duration) entry.timing.textContent = `${Number.parseFloat(call.duration).toFixed(1)} s`;
    if (call.argumentsJson && !entry.arguments) {
      entry.arguments = true;
      entry.output.append(`${call.argumentsJson}\n`);
    }
    if (call.resultSummary) entry.output.append(`→ ${call.resultSummary}\n`);
    if (call.error) entry.output.append(`✗ ${call.error}\n`);
    return entry;
  }

  async function apply(event) {
    const seq = Number(event.seq);
    if (seq <= view.lastSeq) { view.skipped += 1; return; }
    view.lastSeq = seq;
    log.dataset.lastSeq = String(seq);
    if (event.promptQueued) {
      const prompt = event.promptQueued;
      const node = line("prompt", el("span", { class: "who" }, prompt.author ? prompt.author.displayName : ""), prompt.text);
      node.dataset.seq = String(seq);
      view.prompts.set(prompt.messageId, node);
      refresh();
    } else if (event.promptUpdated) {
      const node = view.prompts.get(event.promptUpdated.messageId);
      if (node && event.promptUpdated.text) node.lastChild.textContent = event.promptUpdated.text;
      refresh();
    } else if (event.promptCancelled) {
      const node = view.prompts.get(event.promptCancelled.messageId);
      if (node) node.classList.add("cancelled"), node.append(el("span", { class: "muted" }, " (cancelled)"));
      refresh();
    } else if (event.turnStarted) {
      view.live = null;
      line("turn", `Turn started${event.turnStarted.model ? ` (${event.turnStarted.model})` : ""}`).className = "turn";
      refresh();
    } else if (event.textDelta) {
      if (!view.live) { view.live = line("assistant"); view.live.dataset.seq = String(seq); }
      view.live.append(event.textDelta.text || "");
    } else if (event.assistantMessage) {
      if (!view.live) view.live = line("assistant");
      view.live.textContent = event.assistantMessage.text || "";
      view.live = null;
    } else if (event.toolCall) {
      view.live = null;
      tool(event.toolCall);
    } else if (event.commandOutput) {
      const entry = view.tools.get(event.commandOutput.toolCallId);
      if (entry) entry.output.append(decodeBase64(event.commandOutput.data, entry.decoder));
    } else if (event.artifactAdded) {
      const artifact = event.artifactAdded.artifact || {};
      const holder = line("assistant shots", `${artifact.name} `);
      if (INLINE_IMAGES.includes(artifact.mediaType)) {
        artifactURL(id, artifact).then((url) => {
          view.urls.push(url);
          holder.append(el("img", { src: url, alt: artifact.name }));
        }).catch(() => {});
      } else {
        holder.append(el("a", { href: "#", onclick: async (e) => {
          e.preventDefault();
          const url = await artifactURL(id, artifact);
          view.urls.push(url);
          el("a", { href: url, download: artifact.name || artifact.id }).click();
        } }, "download"));
      }
    } else if (event.branchPushed) {
      line("turn", `Pushed ${(event.branchPushed.commit || "").slice(0, 12)} to ${event.branchPushed.branch}`).className = "turn";
      loadDiff();
    } else if (event.pullRequest) {
      refresh();
    } else if (event.turnFinished) {
      view.live = null;
      const finished = event.turnFinished;
      const outcome = shortState(finished.outcome, "TURN_OUTCOME_").toLowerCase();
      const node = line("turn", `Turn ${outcome}${finished.reason ? `: ${finished.reason}` : ""}`);
      node.className = `turn ${outcome}`;
      refresh();
    } else if (event.presence) {
      const who = event.presence.user ? event.presence.user.displayName : "someone";
      typing.textContent = event.presence.state === "PRESENCE_STATE_TYPING" ? `${who} is typing…` : "";
      clearTimeout(view.typingTimer);
      view.typingTimer = setTimeout(() => { typing.textContent = ""; }, 6000);
    } else if (event.participant) {
      refresh();
    }
  }

  function frame(text) {
    let data = "";
    for (const raw of text.split("\n")) {
      if (raw.startsWith(":")) continue;
      const colon = raw.indexOf(":");
      const field = colon < 0 ? raw : raw.slice(0, colon);
      const value = colon < 0 ? "" : raw.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data += (data ? "\n" : "") + value;
    }
    if (!data) return true;
    let event;
    try { event = JSON.parse(data); } catch { return false; }
    apply(event);
    return true;
  }

  (async () => {
    let backoff = 250;
    while (!view.closed) {
      view.connection = new AbortController();
      try {
        const response = await fetch(`/v1/sessions/${id}/events`, {
          headers: { Authorization: `Bearer ${token()}`, "Last-Event-ID": String(view.lastSeq) },
          signal: view.connection.signal,
        });
        if (response.status === 401) return showLogin("Your token was refused.");
        if (response.status === 404) {
          if (!view.closed) show(el("p", { class: "error" }, `No session ${id} (or it is not yours).`));
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        status.textContent = "live";
        backoff = 250;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          // Line ends may be \r\n, \r or \n; a \r at the very end may be half of a \r\n.
          const tail = buffer.endsWith("\r") ? "\r" : "";
          buffer = buffer.slice(0, buffer.length - tail.length).replace(/\r\n?/g, "\n") + tail;
          let end;
          let broken = false;
          while (!broken && (end = buffer.indexOf("\n\n")) >= 0) {
            broken = !frame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
          // A frame that cannot be read: start again after the last event shown.
          if (broken) { view.connection.abort(); break; }
        }
      } catch (failure) {
        if (view.closed) return;
      }
      if (view.closed) return;
      view.reconnects += 1;
      status.textContent = "reconnecting…";
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  })();
  refresh();
  return view;
}

// ---------------------------------------------------------------------------------------------
// Stats

function statsView() {
  let closed = false;
  const grid = el("div", { class: "stats", id: "stats" });
  show(el("div", { class: "card" }, el("h1", {}, "Stats"), grid));
  (async () => {
    while (!closed) {
      try {
        const { stats } = await api("GET", "/v1/stats?windowSeconds=300");
        const figure = (label, value, key) => el("div", { class: "card stat", "data-stat": key }, el("b", {}, String(value || 0)), label);
        grid.replaceChildren(
          figure("sessions", stats.sessionsTotal, "sessions"),
          figure("running now", stats.sessionsRunning, "running"),
          figure("pull requests opened", stats.pullRequestsOpened, "opened"),
          figure("pull requests merged", stats.pullRequestsMerged, "merged"),
          figure("people prompting (last 5 min)", stats.humansPromptingNow, "humans"),
          figure("prompts (last 5 min)", stats.promptsInWindow, "prompts"));
      } catch (failure) { if (failure.status === 401) return; }
      await sleep(5000);
    }
  })();
  return { close() { closed = true; } };
}

start();
