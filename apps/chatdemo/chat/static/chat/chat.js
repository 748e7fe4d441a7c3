// chatdemo client: one WebSocket per room, reconnecting with exponential backoff.
(function () {
  "use strict";

  const ROOM_RE = /^[A-Za-z0-9_.-]{1,80}$/;
  const BACKOFF_MIN_MS = 500; // first retry delay
  const BACKOFF_MAX_MS = 10000; // cap
  const JITTER = 0.2; // each delay is randomised by +/- 20 %
  const MAX_SHOWN = 500; // messages kept in the list
  // Close code of a server that accepted the handshake but cannot serve chat right now
  // (its channel layer or database is down): not a successful connection for the backoff.
  const TRY_AGAIN_LATER = 1013;

  const statusEl = document.getElementById("status");
  const roomForm = document.getElementById("room-form");
  const roomInput = document.getElementById("room");
  const messages = document.getElementById("messages");
  const messageForm = document.getElementById("message-form");
  const messageInput = document.getElementById("message");
  const sendButton = document.getElementById("send");

  let room = null;
  let socket = null;
  let backoff = BACKOFF_MIN_MS;
  let retryTimer = null;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
    sendButton.disabled = state !== "open";
  }

  function socketUrl(name) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws/chat/" + encodeURIComponent(name) + "/";
  }

  function show(className, text, meta) {
    const item = document.createElement("li");
    item.className = className;
    if (meta) {
      const small = document.createElement("span");
      small.className = "meta";
      small.textContent = meta;
      item.appendChild(small);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text; // never innerHTML: messages are untrusted
    item.appendChild(body);
    const atBottom = messages.scrollTop + messages.clientHeight >= messages.scrollHeight - 8;
    messages.appendChild(item);
    while (messages.childElementCount > MAX_SHOWN) {
      messages.removeChild(messages.firstElementChild);
    }
    if (atBottom) {
      messages.scrollTop = messages.scrollHeight;
    }
  }

  function formatTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
  }

  function onFrame(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      show("error", "unreadable frame from server");
      return;
    }
    if (typeof data.error === "string") {
      show("error", data.error);
    } else if (typeof data.message === "string") {
      show(data.history ? "message history" : "message", data.message, formatTime(data.sent_at));
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    const ws = new WebSocket(socketUrl(room));
    socket = ws;
    setStatus("connecting", "connecting to #" + room + "…");

    let opened = false;
    ws.addEventListener("open", function () {
      if (ws !== socket) return;
      opened = true;
      // The server sends the room's recent history first: it replaces what was shown.
      messages.replaceChildren();
      setStatus("open", "connected to #" + room);
    });
    ws.addEventListener("message", function (event) {
      if (ws !== socket) return;
      onFrame(event);
    });
    ws.addEventListener("close", function (event) {
      if (ws !== socket) return; // a socket we closed on purpose
      socket = null;
      if (opened && event.code !== TRY_AGAIN_LATER) {
        backoff = BACKOFF_MIN_MS;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const jitter = 1 - JITTER + Math.random() * 2 * JITTER;
    const delay = Math.min(BACKOFF_MAX_MS, Math.round(backoff * jitter));
    backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    setStatus("closed", "disconnected, retrying in " + (delay / 1000).toFixed(1) + " s");
    retryTimer = setTimeout(connect, delay);
  }

  function join(name) {
    if (!ROOM_RE.test(name)) {
      show("error", "invalid room name: use 1 to 80 letters, digits, _ . or -");
      return;
    }
    if (socket) {
      const old = socket;
      socket = null;
      old.close(1000, "leaving room");
    }
    room = name;
    backoff = BACKOFF_MIN_MS;
    messages.replaceChildren();
    const url = new URL(window.location.href);
    url.searchParams.set("room", name);
    window.history.replaceState(null, "", url);
    connect();
  }

  roomForm.addEventListener("submit", function (event) {
    event.preventDefault();
    join(roomInput.value.trim());
  });

  messageForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = messageInput.value;
    if (!text) return;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      show("error", "not connected, message not sent");
      return;
    }
    socket.send(JSON.stringify({ message: text }));
    messageInput.value = "";
    messageInput.focus();
  });

  // Back online: retry now instead of waiting for the pending backoff delay.
  window.addEventListener("online", function () {
    if (retryTimer !== null) {
      backoff = BACKOFF_MIN_MS;
      connect();
    }
  });

  join(roomInput.value.trim() || "lobby");
})();
