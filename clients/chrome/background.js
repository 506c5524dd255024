// The toolbar button opens the side panel; captures from pages are kept until the panel reads
// them (the panel may be closed while the person picks).
chrome.runtime.onInstalled.addListener(() => {
  chrome.sidePanel.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});
});

chrome.runtime.onMessage.addListener((message, sender) => {
  if (message.type === "inspect:captured" && sender.tab) {
    chrome.storage.session.set({ lastCapture: { capture: message.capture, tabId: sender.tab.id, at: Date.now() } });
  }
});
