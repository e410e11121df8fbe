import { api } from "../api.js";
import { h, money, notice, render, when } from "../dom.js";
import { messageFor } from "../messages.js";
import { requireLogin } from "../app.js";

export async function ticketsPage(main) {
  if (!requireLogin()) return null;
  render(main, h("h1", {}, "My tickets"), h("p", {}, "Loading…"));
  try {
    const page = await api("/users/me/bookings?limit=100");
    const concerts = new Map();
    for (const id of new Set(page.items.map((b) => b.concert_id))) {
      concerts.set(id, await api(`/concerts/${id}`).catch(() => null));
    }
    const items = page.items.map((b) => {
      const concert = concerts.get(b.concert_id);
      return h("article", { class: b.status === "confirmed" ? "card ticket" : "card", "data-testid": "booking" },
        h("h2", {}, concert ? h("a", { href: `#/concerts/${b.concert_id}` }, concert.title) : `Concert ${b.concert_id}`),
        concert ? h("p", { class: "muted" }, when(concert.starts_at)) : null,
        h("p", {}, `Booking #${b.id} · ${b.status} · ${money(b.amount_minor, b.currency)}`),
        b.tickets.length
          ? h("ul", {}, b.tickets.map((t) => h("li", {}, "Ticket code ", h("code", {}, t.code))))
          : null);
    });
    render(main, h("h1", {}, "My tickets"), items.length ? items : h("p", {}, "No bookings yet."));
  } catch (error) {
    notice(messageFor(error));
  }
}
