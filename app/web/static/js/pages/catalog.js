import { api } from "../api.js";
import { h, money, notice, render, when } from "../dom.js";
import { messageFor } from "../messages.js";
import { chatRoom } from "../chat.js";
import { livePlayer } from "../player.js";

function concertCard(c) {
  return h(
    "article",
    { class: "card" },
    h("h2", {}, h("a", { href: `#/concerts/${c.id}` }, c.title)),
    h("p", {}, h("a", { href: `#/artists/${c.artist.id}` }, c.artist.name)),
    h("p", { class: "muted" }, when(c.starts_at), c.venue ? ` · ${c.venue.name}, ${c.venue.city}` : ""),
    h("p", {}, c.status === "on_sale" ? "On sale" : c.status.replace("_", " ")),
  );
}

/** On-sale concerts, soonest first: search by title or artist (kept in the URL, so a reload or
 * a shared link shows the same list) and "More concerts" pages on with the API's cursor. */
export async function homePage(main, params) {
  const q = (params?.get("q") || "").trim();
  const input = h("input", { type: "search", name: "q", value: q, maxlength: 100, placeholder: "Artist or concert" });
  const search = h(
    "form",
    { role: "search", class: "search", onsubmit: (event) => {
      event.preventDefault();
      const text = input.value.trim();
      location.hash = text ? `#/?q=${encodeURIComponent(text)}` : "#/";
    } },
    h("label", {}, "Search concerts", input),
    h("button", { type: "submit" }, "Search"),
  );
  render(main, h("h1", {}, "Concerts on sale"), search, h("p", {}, "Loading…"));
  const query = (cursor) => {
    // Concerts that have not started yet; the minute is truncated so the page shares one
    // cached answer a minute instead of asking the API for a new one on every visit.
    const now = new Date(Math.floor(Date.now() / 60000) * 60000).toISOString();
    const args = new URLSearchParams({ status: "on_sale", starts_after: now, limit: "24" });
    if (q) args.set("q", q);
    if (cursor) args.set("cursor", cursor);
    return api(`/concerts?${args}`);
  };
  try {
    const first = await query(null);
    const grid = h("div", { class: "grid" }, first.items.map(concertCard));
    const more = h("button", { type: "button", "data-testid": "more-concerts" }, "More concerts");
    let cursor = first.next_cursor;
    more.hidden = !cursor;
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        const page = await query(cursor);
        grid.append(...page.items.map(concertCard));
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (error) {
        notice(messageFor(error));
      } finally {
        more.disabled = false;
      }
    });
    const empty = q ? `No concert on sale matches “${q}”.` : "Nothing on sale right now.";
    render(
      main,
      h("h1", {}, "Concerts on sale"),
      search,
      first.items.length ? [grid, more] : h("p", {}, empty),
    );
  } catch (error) {
    notice(messageFor(error));
  }
}

/** Chat beside the live player (when the artist's channel is LIVE); both clean up on leave. */
function community(room, artistId) {
  const chat = chatRoom(room);
  const player = livePlayer(artistId);
  return {
    el: h("div", { class: "split" }, player.el, chat.el),
    stop: () => { chat.stop(); player.stop(); },
  };
}

export async function artistPage(main, artistId) {
  const [artist, concerts] = await Promise.all([
    api(`/artists/${artistId}`),
    api(`/concerts?artist_id=${artistId}&limit=50`),
  ]);
  const live = community(`artist.${artistId}`, artistId);
  render(
    main,
    h("h1", {}, artist.name),
    h("p", { class: "muted" }, artist.kind),
    live.el,
    h("h2", {}, "Concerts"),
    concerts.items.length ? h("div", { class: "grid" }, concerts.items.map(concertCard)) : h("p", {}, "No concerts yet."),
  );
  return live.stop;
}

export async function concertPage(main, concertId) {
  const concert = await api(`/concerts/${concertId}`);
  let summary = null;
  try {
    summary = await api(`/concerts/${concertId}/availability`);
  } catch {
    summary = null; // general-admission-only concerts have no seat map
  }
  const live = community(`concert.${concertId}`, concert.artist.id);
  render(
    main,
    h("h1", {}, concert.title),
    h("p", {}, h("a", { href: `#/artists/${concert.artist.id}` }, concert.artist.name), " · ", when(concert.starts_at),
      concert.venue ? ` · ${concert.venue.name}, ${concert.venue.city}` : ""),
    summary
      ? h("section", { class: "card", "aria-label": "Availability" },
          h("table", {},
            h("thead", {}, h("tr", {}, h("th", {}, "Section"), h("th", {}, "Price"), h("th", {}, "Available"))),
            h("tbody", {}, summary.sections.map((s) =>
              h("tr", {}, h("td", {}, s.name), h("td", {}, money(s.price_minor, s.currency)), h("td", {}, `${s.available} / ${s.total}`))))),
          h("p", {}, h("a", { href: `#/concerts/${concertId}/seats`, class: "button" }, "Choose seats")))
      : null,
    h("h2", {}, "Fan room"),
    live.el,
  );
  return live.stop;
}
