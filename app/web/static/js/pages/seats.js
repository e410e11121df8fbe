// The seat map: live availability, selection, hold (with the admission token), countdown, pay,
// and the ticket.
import { api, newIdempotencyKey } from "../api.js";
import { duration, h, money, notice, render } from "../dom.js";
import { messageFor } from "../messages.js";
import { admission, dropAdmission } from "../admission.js";
import { requireLogin } from "../app.js";

const REFRESH_MS = 3000;

async function allSeats(concertId) {
  const seats = [];
  let cursor = null;
  do {
    const page = await api(`/concerts/${concertId}/seats?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    seats.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return seats;
}

async function outcome(requestId) {
  // An accepted request (202) is decided by the booking consumer within moments.
  for (let attempt = 0; attempt < 120; attempt += 1) {
    const request = await api(`/bookings/requests/${requestId}`);
    if (request.status !== "pending") return request;
    await new Promise((resolve) => setTimeout(resolve, attempt < 10 ? 250 : 1000));
  }
  throw Object.assign(new Error("Your request is still being processed; check My tickets shortly."), { slug: "pending" });
}

export function ticketView(booking) {
  return h("section", { class: "ticket", "aria-label": "Your ticket", "data-testid": "ticket" },
    h("h2", {}, "You're going!"),
    h("p", {}, `Booking #${booking.id} · ${money(booking.amount_minor, booking.currency)} paid`),
    h("ul", {}, booking.tickets.map((t) => h("li", {}, "Ticket code ", h("code", {}, t.code), t.seat_id ? ` · seat ${t.seat_label || t.seat_id}` : ""))));
}

export async function seatsPage(main, concertId) {
  if (!requireLogin()) return null;
  const [concert, summary] = await Promise.all([
    api(`/concerts/${concertId}`),
    api(`/concerts/${concertId}/availability`),
  ]);
  const sections = new Map(summary.sections.map((s) => [s.section_id, s]));
  const selected = new Set();
  const buttons = new Map();
  const labels = new Map();
  let booking = null;
  let timers = [];
  const mapEl = h("div", { class: "seatmap", "aria-label": "Seat map" });
  const selection = h("p", { role: "status", "aria-live": "polite" }, "Select up to ", String(concert.max_tickets_per_user), " seats.");
  const holdButton = h("button", { type: "button", class: "primary", disabled: true, "data-testid": "hold" }, "Hold selected seats");
  const cart = h("section", { class: "card", "aria-label": "Your booking" });

  const updateSelection = () => {
    const names = [...selected].map((id) => labels.get(id));
    selection.textContent = names.length ? `Selected: ${names.join(", ")}` : `Select up to ${concert.max_tickets_per_user} seats.`;
    holdButton.disabled = !names.length || booking !== null;
  };

  const paint = (seats) => {
    for (const seat of seats) {
      const button = buttons.get(seat.id);
      if (!button) continue;
      const mine = booking?.seat_ids.includes(seat.id);
      const status = mine ? "mine" : seat.status;
      button.dataset.status = status === "mine" ? "held" : status;
      if (mine) button.setAttribute("aria-pressed", "true");
      button.disabled = !mine && seat.status !== "available";
      button.setAttribute("aria-label", `${labels.get(seat.id)}, ${mine ? "your hold" : seat.status}`);
      if (seat.status !== "available" && !mine && selected.delete(seat.id)) {
        button.setAttribute("aria-pressed", "false");
        updateSelection();
      }
    }
  };

  const build = (seats) => {
    const bySection = new Map();
    for (const seat of seats) {
      if (!bySection.has(seat.section_id)) bySection.set(seat.section_id, new Map());
      const rows = bySection.get(seat.section_id);
      if (!rows.has(seat.row_label)) rows.set(seat.row_label, []);
      rows.get(seat.row_label).push(seat);
    }
    mapEl.replaceChildren();
    for (const [sectionId, rows] of bySection) {
      const section = sections.get(sectionId);
      const block = h("fieldset", { class: "section" },
        h("legend", {}, `${section?.name ?? "Section"} · ${section ? money(section.price_minor, section.currency) : ""}`));
      for (const [row, rowSeats] of rows) {
        const line = h("div", { class: "seatrow" }, h("span", { class: "label", "aria-hidden": "true" }, row));
        for (const seat of rowSeats.sort((a, b) => a.number - b.number)) {
          const label = `${section?.name ?? ""} row ${row} seat ${seat.number}`;
          labels.set(seat.id, label);
          const button = h("button", {
            type: "button", class: "seat", "aria-pressed": "false", title: label,
            dataset: { seatId: seat.id, row, number: seat.number },
          }, String(seat.number));
          button.addEventListener("click", () => {
            if (booking) return;
            if (selected.has(seat.id)) selected.delete(seat.id);
            else if (selected.size < concert.max_tickets_per_user) selected.add(seat.id);
            else return notice(`You can pick at most ${concert.max_tickets_per_user} seats.`, "info");
            button.setAttribute("aria-pressed", String(selected.has(seat.id)));
            updateSelection();
          });
          buttons.set(seat.id, button);
          line.append(button);
        }
        block.append(line);
      }
      mapEl.append(block);
    }
    paint(seats);
  };

  const refresh = async () => {
    try {
      paint(await allSeats(concertId));
    } catch {
      // A missed refresh is retried on the next tick; the map keeps its last state.
    }
  };

  const clearTimers = () => { timers.forEach(clearInterval); timers = []; };

  const showHold = () => {
    const left = h("span", { class: "countdown", "data-testid": "countdown" });
    const pay = h("button", { type: "button", class: "primary", "data-testid": "pay" }, `Pay ${money(booking.amount_minor, booking.currency)}`);
    const cancel = h("button", { type: "button" }, "Release seats");
    const tick = () => {
      const seconds = (new Date(booking.hold_expires_at) - new Date()) / 1000;
      left.textContent = duration(seconds);
      if (seconds <= 0) {
        clearTimers();
        notice(messageFor({ slug: "hold-expired" }));
        booking = null;
        render(cart, h("p", {}, "Your hold expired."));
        updateSelection();
        refresh();
      }
    };
    tick();
    timers.push(setInterval(tick, 1000));
    pay.addEventListener("click", async () => {
      pay.disabled = true;
      pay.textContent = "Paying…";
      try {
        const paid = await api(`/bookings/${booking.id}/pay`, { method: "POST", headers: { "Idempotency-Key": newIdempotencyKey() } });
        clearTimers();
        dropAdmission(concertId);
        booking = null;
        for (const id of selected) buttons.get(id)?.setAttribute("aria-pressed", "false");
        selected.clear();
        updateSelection();
        refresh();
        paid.tickets.forEach((t) => { t.seat_label = labels.get(t.seat_id); });
        render(cart, ticketView(paid), h("p", {}, h("a", { href: "#/tickets" }, "See all my tickets")));
        notice("Payment complete. Enjoy the show!", "ok");
        cart.querySelector("h2").setAttribute("tabindex", "-1");
        cart.querySelector("h2").focus();
      } catch (error) {
        notice(messageFor(error));
        pay.disabled = false;
        pay.textContent = `Pay ${money(booking.amount_minor, booking.currency)}`;
        if (error.slug === "hold-expired" || error.slug === "invalid-booking-state") {
          clearTimers();
          booking = null;
          render(cart);
          updateSelection();
          refresh();
        }
      }
    });
    cancel.addEventListener("click", async () => {
      try {
        await api(`/bookings/${booking.id}`, { method: "DELETE" });
      } catch (error) {
        notice(messageFor(error));
      }
      clearTimers();
      booking = null;
      render(cart);
      for (const id of selected) buttons.get(id)?.setAttribute("aria-pressed", "false");
      selected.clear();
      updateSelection();
      refresh();
    });
    render(cart,
      h("h2", {}, "Seats on hold"),
      h("p", {}, booking.seat_ids.map((id) => labels.get(id)).join(", ")),
      h("p", {}, "Time left to pay: ", left),
      h("div", { class: "row" }, pay, cancel));
    pay.focus();
  };

  holdButton.addEventListener("click", async () => {
    const ticket = admission(concertId);
    const headers = { "Idempotency-Key": newIdempotencyKey() };
    if (ticket) headers["X-Admission-Token"] = ticket.token;
    holdButton.disabled = true;
    holdButton.textContent = "Holding…";
    notice(null);
    try {
      let result = await api(`/concerts/${concertId}/bookings`, { method: "POST", headers, body: { seat_ids: [...selected] } });
      if (result.request_id) {
        const decided = await outcome(result.request_id);
        if (decided.status === "rejected") throw Object.assign(new Error(decided.reason), { slug: decided.reason });
        result = await api(`/bookings/${decided.booking_id}`);
      }
      booking = result;
      showHold();
    } catch (error) {
      if (error.slug === "admission-required" || error.slug?.startsWith("admission-")) {
        const saleId = error.problem?.sale_id ?? ticket?.sale_id;
        notice(messageFor(error));
        if (saleId) render(cart, h("a", { href: `#/sales/${saleId}`, class: "button primary" }, "Go to the waiting room"));
      } else {
        notice(messageFor(error));
      }
      for (const id of selected) buttons.get(id)?.setAttribute("aria-pressed", "false");
      selected.clear();
    } finally {
      holdButton.textContent = "Hold selected seats";
      updateSelection();
      refresh();
    }
  });

  const pass = admission(concertId);
  render(
    main,
    h("h1", {}, `Seats · ${concert.title}`),
    h("p", { class: "muted" }, pass ? `Shopping time until ${new Date(pass.expires_at).toLocaleTimeString()}` : "Pick your seats."),
    h("div", { class: "legend", "aria-hidden": "true" },
      h("span", { class: "free" }, "Available"),
      h("span", { class: "held" }, "On hold"),
      h("span", { class: "sold" }, "Sold"),
      h("span", { class: "mine" }, "Your pick")),
    h("div", { class: "split" }, mapEl, h("div", {}, selection, holdButton, cart)),
  );
  build(await allSeats(concertId));
  const poller = setInterval(refresh, REFRESH_MS);
  return () => { clearTimers(); clearInterval(poller); };
}
