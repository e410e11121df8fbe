// The STOMP chat room of an artist or concert (stompjs over the API's /ws/stomp).
import { session } from "./api.js";
import { h, loadScript } from "./dom.js";
import { messageFor } from "./messages.js";

const STOMP_SRC = "/static/vendor/stomp.umd.min.js";

function myUserId() {
  try {
    const token = session()?.access_token;
    return Number(JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub);
  } catch {
    return null;
  }
}

export function chatRoom(room) {
  const list = h("ol", { "aria-live": "polite", "aria-label": "Messages" });
  const status = h("p", { class: "muted", role: "status" }, "Connecting to the chat…");
  const input = h("input", { name: "text", maxlength: 500, "aria-label": "Your message", autocomplete: "off", disabled: true });
  const send = h("button", { type: "submit", class: "primary", disabled: true }, "Send");
  const form = h("form", {}, input, send);
  const el = h("section", { class: "chat card", "aria-label": "Chat" }, h("h2", {}, "Chat"), status, list, form);
  const destination = `/topic/${room}`;
  const me = myUserId();
  let client = null;
  let stopped = false;

  const show = (message) => {
    const own = message.user_id === me;
    const item = message.event === "message"
      ? h("li", { class: own ? "own" : "" }, h("strong", {}, own ? "You" : `Fan #${message.user_id}`), ": ", message.text)
      : h("li", { class: "system" }, message.text || message.event.replace(/_/g, " "));
    list.append(item);
    list.scrollTop = list.scrollHeight;
  };

  if (!session()) {
    status.replaceChildren("Log in to join the chat. ", h("a", { href: `#/login?next=${encodeURIComponent(location.hash.slice(1))}` }, "Log in"));
    return { el, stop() {} };
  }

  loadScript(STOMP_SRC).then(() => {
    if (stopped) return;
    const { Client } = window.StompJs;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    client = new Client({
      brokerURL: `${scheme}://${location.host}/ws/stomp`,
      connectHeaders: { Authorization: `Bearer ${session()?.access_token}` },
      reconnectDelay: 4000,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      beforeConnect: () => {
        client.connectHeaders = { Authorization: `Bearer ${session()?.access_token}` };
      },
      onConnect: () => {
        status.textContent = "Connected.";
        input.disabled = send.disabled = false;
        list.replaceChildren(); // the subscription replays recent history first
        client.subscribe(destination, (frame) => show(JSON.parse(frame.body)));
      },
      onStompError: (frame) => {
        const slug = (frame.headers.type || "").split("/").pop();
        status.textContent = messageFor({ slug, message: frame.body, retryAfter: Number(frame.headers["retry-after"]) || null });
      },
      onWebSocketClose: () => {
        input.disabled = send.disabled = true;
        if (!stopped && !status.textContent.startsWith("You")) status.textContent = "Reconnecting to the chat…";
      },
    });
    client.activate();
  }).catch(() => {
    status.textContent = "The chat could not be loaded (run `make web-vendor`).";
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !client?.connected) return;
    client.publish({ destination, body: text });
    input.value = "";
  });

  return {
    el,
    stop() {
      stopped = true;
      client?.deactivate();
    },
  };
}
