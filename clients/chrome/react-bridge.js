// In the page's main world (where React's fibres are visible on DOM nodes): answers the picker's
// request for the React component stack of the marked element, as JSON text.
(function () {
  "use strict";
  if (window.__inspectReactBridge) return;
  window.__inspectReactBridge = true;
  document.addEventListener("inspect:react-request", (event) => {
    const nonce = String(event.detail);
    const element = document.querySelector(`[data-inspect-pick="${CSS.escape(nonce)}"]`);
    let react = null;
    try {
      react = element ? globalThis.__inspectCapture.reactComponents(element) : null;
    } catch (error) {
      react = { components: [], omitted: 0, error: String(error) };
    }
    document.dispatchEvent(new CustomEvent("inspect:react-response", { detail: JSON.stringify({ nonce, react }) }));
  });
})();
