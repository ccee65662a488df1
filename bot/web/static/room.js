// The local room, live: polls /room/events and posts through fetch. Without this script the
// page still works (form post + redirect); with it nothing reloads.
(function () {
  "use strict";

  var timeline = document.getElementById("timeline");
  var form = document.getElementById("post-form");
  if (!timeline || !form) {
    return;
  }
  var POLL_MS = 1500;
  var since = Number(timeline.dataset.lastSeq || "0");
  var botName = timeline.dataset.botName || "";
  var errorBox = document.getElementById("post-error");
  var banner = document.getElementById("thread-banner");
  var bannerName = document.getElementById("thread-name");
  var polling = false;
  var scrollTo = null;

  function byEventId(id) {
    return document.querySelector('[data-event-id="' + CSS.escape(id) + '"]');
  }

  function span(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function messageElement(ev, isRoot) {
    var li = document.createElement("li");
    li.className = "message " + (isRoot ? "root" : "reply") + (ev.bot ? " bot" : "");
    li.id = ev.event_id;
    li.dataset.eventId = ev.event_id;
    li.dataset.seq = String(ev.seq);
    var meta = document.createElement("header");
    meta.className = "meta";
    meta.appendChild(span("name", ev.name));
    if (ev.bot) {
      meta.appendChild(span("badge", "bot"));
    }
    if (ev.mentions_bot) {
      meta.appendChild(span("mention", "@" + botName));
    }
    var time = document.createElement("time");
    time.textContent = ev.time;
    meta.appendChild(time);
    var body = document.createElement("div");
    if (typeof ev.html === "string") {
      // The server rendered the bot's Markdown with raw HTML disabled (as on the page).
      body.className = "body markdown";
      body.innerHTML = ev.html;
    } else {
      body.className = "body text";
      body.textContent = ev.body; // people's text is never parsed as HTML
    }
    li.appendChild(meta);
    li.appendChild(body);
    if (isRoot) {
      var thread = document.createElement("ol");
      thread.className = "thread";
      li.appendChild(thread);
      var link = document.createElement("a");
      link.className = "reply-link";
      link.href = "/room?thread=" + encodeURIComponent(ev.event_id) + "#post-form";
      link.dataset.threadRoot = ev.event_id;
      link.dataset.threadName = ev.name;
      link.textContent = "Reply in thread";
      li.appendChild(link);
    }
    return li;
  }

  function add(ev) {
    if (ev.type !== "m.room.message" || typeof ev.name !== "string" || byEventId(ev.event_id)) {
      return;
    }
    var root = ev.thread_root ? byEventId(ev.thread_root) : null;
    var thread = root ? root.querySelector(".thread") : null;
    if (thread) {
      thread.appendChild(messageElement(ev, false));
    } else {
      var empty = timeline.querySelector(".empty");
      if (empty) {
        empty.remove();
      }
      timeline.appendChild(messageElement(ev, true));
    }
    if (scrollTo === ev.event_id) {
      byEventId(ev.event_id).scrollIntoView({ block: "nearest" });
      scrollTo = null;
    }
  }

  function poll() {
    if (polling) {
      return Promise.resolve();
    }
    polling = true;
    return fetch("/room/events?since=" + since, { headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : [];
      })
      .then(function (events) {
        events.forEach(function (ev) {
          add(ev);
          since = Math.max(since, ev.seq);
        });
      })
      .catch(function () {
        /* the bot is restarting or gone: try again on the next tick */
      })
      .finally(function () {
        polling = false;
      });
  }

  function schedule() {
    window.setTimeout(function () {
      poll().then(schedule);
    }, POLL_MS);
  }

  function setThread(rootId, name) {
    form.elements.thread_root.value = rootId;
    bannerName.textContent = name;
    banner.hidden = !rootId;
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function newTxnId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return b.toString(16).padStart(2, "0");
      })
      .join("");
  }

  timeline.addEventListener("click", function (e) {
    var link = e.target.closest("a.reply-link");
    if (!link) {
      return;
    }
    e.preventDefault();
    setThread(link.dataset.threadRoot, link.dataset.threadName);
    form.elements.body.focus();
  });

  document.getElementById("thread-cancel").addEventListener("click", function (e) {
    e.preventDefault();
    setThread("", "");
    form.elements.body.focus();
  });

  form.addEventListener("submit", function (e) {
    if (!window.fetch) {
      return; // the plain form post still works
    }
    e.preventDefault();
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return { error: "Not sent: the bot answered HTTP " + response.status + "." };
          })
          .then(function (data) {
            if (!response.ok) {
              showError(data.error || "Not sent (HTTP " + response.status + ").");
              return;
            }
            showError("");
            form.elements.body.value = "";
            form.elements.txn_id.value = newTxnId(); // the next message is a new transaction
            scrollTo = data.event_id;
            return poll();
          });
      })
      .catch(function () {
        // Unknown whether it arrived: keep the text and the transaction id, so sending again
        // cannot post it twice.
        showError("Not sent: the bot cannot be reached. Try again.");
      })
      .finally(function () {
        button.disabled = false;
      });
  });

  form.elements.body.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  schedule();
})();
