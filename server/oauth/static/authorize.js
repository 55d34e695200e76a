// Keeps the pairing page current without a reload while the person scans and approves on the device.
// The page works without this script (a <noscript> refresh covers the waiting states).
(function () {
  "use strict";
  var root = document.getElementById("pairing");
  if (!root) { return; }
  var url = root.getAttribute("data-status-url");
  var shown = root.getAttribute("data-status");
  var stateLine = document.getElementById("pairing-state");
  var expires = document.getElementById("expires-in");
  var seconds = expires ? parseInt(expires.getAttribute("data-seconds"), 10) : 0;

  function countdown() {
    if (!expires) { return; }
    seconds = Math.max(0, seconds - 1);
    expires.textContent = Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  function render(s) {
    if (!stateLine) { return; }
    stateLine.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = s.device_name || "your device";
    if (s.status === "claimed") {
      stateLine.append("Scanned by ", strong, ". Confirm on your device.");
    } else if (s.status === "approved") {
      stateLine.append("Approved on ", strong, ". Type the pairing code it shows.");
      var input = document.getElementById("code");
      if (input && document.activeElement !== input) { input.focus(); }
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        if (["declined", "expired", "burnt", "completed"].indexOf(s.status) >= 0 && s.status !== shown) {
          window.location.reload();
          return;
        }
        if (s.status !== shown) { shown = s.status; render(s); }
      })
      .catch(function () { /* the server may be restarting: try again on the next tick */ });
  }

  setInterval(countdown, 1000);
  if (["waiting", "claimed", "approved"].indexOf(shown) >= 0) { setInterval(poll, 1500); }
})();
