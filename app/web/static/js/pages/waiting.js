// The waiting room: one join (which keeps the same place on refresh), then the SSE push channel.
import { api } from "../api.js";
import { duration, h, notice, render, when } from "../dom.js";
import { messageFor } from "../messages.js";
import { follow } from "../sse.js";
import { saveAdmission } from "../admission.js";
import { requireLogin } from "../app.js";

const TERMINAL = new Set(["admitted", "expired", "closed", "sold_out"]);

// The fan's words for each state (the API's `message` is the fallback).
function explain(s, sale) {
  const ahead = s.people_ahead;
  switch (s.state) {
    case "pre_queue":
      return `You're in the pre-queue. When the sale opens (${when(sale.opens_at)}) everyone here gets a random place in line, so arriving earlier gives no advantage.`;
    case "waiting":
      return ahead === 0 ? "You're next: almost your turn." : `You're in line: ${ahead} ${ahead === 1 ? "fan" : "fans"} ahead of you.`;
    case "admitted":
      return "The wait is over: your shopping time has started.";
    case "expired":
      if (s.reason === "admission_expired") return "Your shopping time ran out and your turn has passed.";
      if (s.reason === "admission_unclaimed") return "It was your turn while this page was closed, so it passed to the next fan.";
      if (s.reason === "admission_idle") return "Your turn passed to the next fan because no seats were picked for a while.";
      return "Your place expired because this page was closed for too long.";
    case "sold_out":
      return "Sold out: every ticket has been sold.";
    case "closed":
      return "This sale has closed.";
    default:
      return s.message;
  }
}

export async function waitingRoomPage(main, saleId) {
  if (!requireLogin()) return null;
  const sale = await api(`/sales/${saleId}`);
  const concert = await api(`/concerts/${sale.concert_id}`);
  const controller = new AbortController();
  // The largest "ahead" seen is the start of the progress bar; kept across refreshes.
  const startKey = `tr.queue.start.${saleId}`;

  const stateText = h("p", { class: "queue-state", role: "status", "aria-live": "polite" });
  const position = h("dd", { "data-testid": "position" }, "—");
  const ahead = h("dd", { "data-testid": "ahead" }, "—");
  const eta = h("dd", { "data-testid": "eta" }, "—");
  const bar = h("progress", { max: 100, value: 0, "aria-label": "Progress through the queue" });
  const action = h("div", { class: "row" });
  render(
    main,
    h("h1", {}, `Waiting room · ${concert.title}`),
    h("p", { class: "muted" }, `${concert.artist.name} · sale opens ${when(sale.opens_at)}`),
    h("section", { class: "card", "aria-label": "Your place" },
      stateText,
      h("dl", { class: "stats" },
        h("div", {}, h("dt", {}, "Your number"), position),
        h("div", {}, h("dt", {}, "People ahead"), ahead),
        h("div", {}, h("dt", {}, "Estimated wait"), eta)),
      bar,
      action),
    h("p", { class: "muted" }, "Keep this page open: it updates by itself, and reloading keeps your place."),
  );

  const show = (s) => {
    stateText.textContent = explain(s, sale);
    // Once admitted the API drops the number; the fan still sees the one they had.
    if (s.position !== null || s.state !== "admitted") position.textContent = s.position ?? "—";
    ahead.textContent = s.people_ahead ?? "—";
    eta.textContent = s.state === "pre_queue" ? `opens in ${duration(s.eta_seconds)}` : duration(s.eta_seconds);
    if (s.people_ahead !== null && s.people_ahead !== undefined) {
      const start = Math.max(Number(localStorage.getItem(startKey)) || 0, s.people_ahead);
      localStorage.setItem(startKey, String(start));
      bar.value = start ? Math.round(((start - s.people_ahead) / start) * 100) : 100;
    }
    action.replaceChildren();
    if (s.state === "admitted") {
      bar.value = 100;
      saveAdmission(sale.concert_id, s);
      localStorage.removeItem(startKey);
      const go = h("a", { href: `#/concerts/${sale.concert_id}/seats`, class: "button primary", "data-testid": "choose-seats" }, "Choose your seats");
      action.append(h("p", { class: "ok" }, `It's your turn! Book before ${when(s.admission_expires_at)}.`), go);
      go.focus();
    } else if (s.rejoin_url) {
      action.append(h("button", { type: "button", onclick: join }, "Join again at the back of the line"));
    }
    return TERMINAL.has(s.state);
  };

  const onError = (error) => {
    notice(messageFor(error));
    // A lost place or an over sale ends the stream; anything else is retried by `follow`.
    return ["not-in-queue", "sale-closed", "sale-not-found", "invalid-token"].includes(error.slug);
  };

  const stream = (eventsUrl) =>
    follow(eventsUrl, {
      signal: controller.signal,
      onError,
      onEvent: (event) => {
        if (event.event === "not_in_queue") {
          notice(messageFor({ slug: "not-in-queue" }));
          return true;
        }
        if (event.event !== "status") return false;
        notice(null);
        return show(JSON.parse(event.data));
      },
    });

  async function join() {
    try {
      const status = await api(`/sales/${saleId}/queue`, { method: "POST" });
      if (!show(status)) stream(status.events_url);
    } catch (error) {
      notice(messageFor(error));
    }
  }
  join();
  return () => controller.abort();
}
