// The element picker, in every page's isolated world: when the side panel asks, an outline
// follows the pointer; a click picks the element under it, Esc cancels. The picked element is
// captured (capture.js), React's part is asked of the page's main world (react-bridge.js), and
// the capture goes to the extension.
(function () {
  "use strict";
  if (window.__inspectPicker) return;
  window.__inspectPicker = true;
  const capture = globalThis.__inspectCapture;

  let active = false;
  let outline = null;
  let label = null;
  let hovered = null;

  function overlay() {
    outline = document.createElement("div");
    outline.setAttribute("data-inspect-overlay", "");
    Object.assign(outline.style, {
      position: "fixed", pointerEvents: "none", zIndex: "2147483647", border: "2px solid #2563eb",
      background: "rgba(37, 99, 235, 0.12)", borderRadius: "2px", transition: "all 40ms",
    });
    label = document.createElement("div");
    label.setAttribute("data-inspect-overlay", "");
    Object.assign(label.style, {
      position: "fixed", pointerEvents: "none", zIndex: "2147483647", font: "12px system-ui, sans-serif",
      background: "#1e3a8a", color: "white", padding: "2px 6px", borderRadius: "3px",
    });
    document.documentElement.append(outline, label);
  }

  function show(element) {
    const box = element.getBoundingClientRect();
    Object.assign(outline.style, {
      left: `${box.left}px`, top: `${box.top}px`, width: `${box.width}px`, height: `${box.height}px`,
    });
    label.textContent = `${element.localName}${element.id ? "#" + element.id : ""} ${Math.round(box.width)}×${Math.round(box.height)}`;
    Object.assign(label.style, { left: `${box.left}px`, top: `${Math.max(0, box.top - 20)}px` });
  }

  function target(event) {
    const element = document.elementFromPoint(event.clientX, event.clientY);
    return element && !element.hasAttribute("data-inspect-overlay") ? element : null;
  }

  function onMove(event) {
    const element = target(event);
    if (!element || element === hovered) return;
    hovered = element;
    show(element);
  }

  function swallow(event) {
    event.preventDefault();
    event.stopPropagation();
    event.stopImmediatePropagation();
  }

  async function onClick(event) {
    swallow(event);
    // Only the person's own click picks (a page's script could dispatch one).
    if (!event.isTrusted) return;
    const element = target(event) || hovered;
    stop();
    if (!element) return;
    const captured = capture.captureElement(element);
    captured.react = await reactPart(element);
    chrome.runtime.sendMessage({ type: "inspect:captured", capture: capture.fit(captured) });
  }

  function onKey(event) {
    if (!event.isTrusted) return;
    swallow(event);
    if (event.type !== "keydown" || event.key !== "Escape") return;
    stop();
    chrome.runtime.sendMessage({ type: "inspect:cancelled" });
  }

  // Asks the main world for the React part: the element is marked with a one-time attribute,
  // the answer comes back as JSON text in a DOM event (objects do not cross worlds).
  function reactPart(element) {
    const nonce = Math.random().toString(36).slice(2);
    element.setAttribute("data-inspect-pick", nonce);
    return new Promise((resolve) => {
      const done = (value) => {
        document.removeEventListener("inspect:react-response", listener);
        element.removeAttribute("data-inspect-pick");
        resolve(value);
      };
      const listener = (event) => {
        let answer;
        try {
          answer = JSON.parse(event.detail);
        } catch {
          return;
        }
        if (answer.nonce === nonce) done(checked(answer.react));
      };
      document.addEventListener("inspect:react-response", listener);
      document.dispatchEvent(new CustomEvent("inspect:react-request", { detail: nonce }));
      setTimeout(() => done(null), 1000);
    });
  }

  // The main world's answer, as the page could have forged it: kept only in the expected shape,
  // with strings and numbers bounded (what it says is still the page's word, and the agent is
  // told so).
  function checked(react) {
    if (!react || typeof react !== "object" || !Array.isArray(react.components)) return null;
    const text = (value, limit) => (typeof value === "string" ? value.slice(0, limit) : null);
    const count = (value) => (Number.isFinite(value) ? Math.max(0, Math.min(1e6, Math.round(value))) : 0);
    const components = [];
    for (const component of react.components.slice(0, capture.LIMITS.components)) {
      if (!component || typeof component !== "object" || !text(component.name, 100)) continue;
      const entry = { name: text(component.name, 100), props: {} };
      if (component.props && typeof component.props === "object" && !Array.isArray(component.props)) {
        const json = JSON.stringify(component.props);
        if (json.length <= capture.LIMITS.propsBytes + 256) entry.props = JSON.parse(json);
        else entry.propsTruncated = true;
      }
      if (component.propsTruncated === true) entry.propsTruncated = true;
      const source = component.source;
      if (source && typeof source === "object" && text(source.fileName, 300)) {
        entry.source = { fileName: text(source.fileName, 300), lineNumber: count(source.lineNumber) };
        if (source.columnNumber) entry.source.columnNumber = count(source.columnNumber);
      }
      components.push(entry);
    }
    return { components, omitted: count(react.omitted) };
  }

  // While picking, the page gets no pointer, mouse, touch or key events: listened for on the
  // window, in the capture phase, before any of the page's own listeners.
  const SWALLOWED = [
    "pointerdown", "pointerup", "mousedown", "mouseup", "dblclick", "contextmenu", "auxclick", "touchstart",
    "touchend",
  ];

  function start() {
    if (active) return;
    active = true;
    overlay();
    window.addEventListener("mousemove", onMove, true);
    window.addEventListener("click", onClick, true);
    for (const type of SWALLOWED) window.addEventListener(type, swallow, true);
    window.addEventListener("keydown", onKey, true);
    window.addEventListener("keyup", onKey, true);
  }

  function stop() {
    if (!active) return;
    active = false;
    outline.remove();
    label.remove();
    hovered = null;
    window.removeEventListener("mousemove", onMove, true);
    window.removeEventListener("click", onClick, true);
    for (const type of SWALLOWED) window.removeEventListener(type, swallow, true);
    window.removeEventListener("keydown", onKey, true);
    window.removeEventListener("keyup", onKey, true);
  }

  chrome.runtime.onMessage.addListener((message, _sender, reply) => {
    if (message.type === "inspect:pick") {
      start();
      reply({ picking: true, url: location.href, title: document.title });
    } else if (message.type === "inspect:cancel") {
      stop();
      reply({ picking: false });
    }
  });
})();
