// Live queue: every few seconds, ask /queue/updates for questions queued since the newest row
// shown (same filters as the page) and put them on top. The rows come rendered (and escaped)
// by the server's own row template. Without JavaScript the page's Refresh link does the same.
(function () {
  "use strict";
  var table = document.getElementById("queue");
  if (!table || !table.dataset.updatesUrl) return;
  var tbody = table.tBodies[0];
  var status = document.getElementById("live-status");
  var after = table.dataset.after;
  var everyMs = 5000;
  var timer = null;
  var busy = false;
  var added = 0;

  function say(text) {
    if (status) status.textContent = text;
  }

  function known(eventId) {
    var rows = tbody.rows;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-event-id") === eventId) return true;
    }
    return false;
  }

  function insert(items) {
    var empty = tbody.querySelector("tr.empty");
    // Items come newest first; insert oldest first so the newest ends on top.
    for (var i = items.length - 1; i >= 0; i--) {
      if (known(items[i].event_id)) continue;
      var holder = document.createElement("tbody");
      holder.innerHTML = items[i].html;
      var row = holder.querySelector("tr");
      if (!row) continue;
      row.classList.add("fresh");
      tbody.insertBefore(row, tbody.firstChild);
      added++;
      if (empty) { empty.remove(); empty = null; }
    }
    if (added) say(added + " new question" + (added === 1 ? "" : "s") + " since the page loaded.");
  }

  function poll() {
    timer = null;
    if (busy) return;
    if (document.hidden) { schedule(); return; }
    busy = true;
    var url = table.dataset.updatesUrl;
    url += (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(after);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        busy = false;
        var type = response.headers.get("Content-Type") || "";
        if (response.redirected || type.indexOf("application/json") < 0) {
          // Signed out (the session expired): stop rather than poll a login page.
          say("Live updates stopped: sign in again to resume.");
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (!data) return;
        if (data.items && data.items.length) insert(data.items);
        if (data.latest) after = data.latest;
        schedule();
      })
      .catch(function () {
        busy = false;
        say("Live updates paused (connection problem); retrying.");
        schedule();
      });
  }

  function schedule() {
    if (timer === null) timer = window.setTimeout(poll, everyMs);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null) poll();
  });
  schedule();
})();
