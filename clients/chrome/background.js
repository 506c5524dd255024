// The toolbar button opens the side panel; captures from pages are kept until the panel reads
// them (the panel may be closed while the person picks).
chrome.runtime.onInstalled.addListener(() => {
  chrome.sidePanel.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});
});

// The API token is kept in storage.local: only the extension's own pages may read it, not the
// content scripts running in every page.
chrome.storage.local.setAccessLevel({ accessLevel: "TRUSTED_CONTEXTS" }).catch(() => {});

chrome.runtime.onMessage.addListener((message, sender) => {
  if (message.type === "inspect:captured" && sender.tab) {
    chrome.storage.session.set({ lastCapture: { capture: message.capture, tabId: sender.tab.id, at: Date.now() } });
  }
});
