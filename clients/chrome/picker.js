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
    const element = target(event) || hovered;
    stop();
    if (!element) return;
    const captured = capture.captureElement(element);
    captured.react = await reactPart(element);
    chrome.runtime.sendMessage({ type: "inspect:captured", capture: capture.fit(captured) });
  }

  function onKey(event) {
    if (event.key !== "Escape") return;
    swallow(event);
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
        if (answer.nonce === nonce) done(answer.react);
      };
      document.addEventListener("inspect:react-response", listener);
      document.dispatchEvent(new CustomEvent("inspect:react-request", { detail: nonce }));
      setTimeout(() => done(null), 1000);
    });
  }

  function start() {
    if (active) return;
    active = true;
    overlay();
    document.addEventListener("mousemove", onMove, true);
    document.addEventListener("click", onClick, true);
    document.addEventListener("mousedown", swallow, true);
    document.addEventListener("mouseup", swallow, true);
    document.addEventListener("keydown", onKey, true);
  }

  function stop() {
    if (!active) return;
    active = false;
    outline.remove();
    label.remove();
    hovered = null;
    document.removeEventListener("mousemove", onMove, true);
    document.removeEventListener("click", onClick, true);
    document.removeEventListener("mousedown", swallow, true);
    document.removeEventListener("mouseup", swallow, true);
    document.removeEventListener("keydown", onKey, true);
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
