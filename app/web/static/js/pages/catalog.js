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

export async function homePage(main) {
  render(main, h("h1", {}, "Concerts"), h("p", {}, "Loading…"));
  try {
    const page = await api("/concerts?status=on_sale&limit=50");
    render(
      main,
      h("h1", {}, "Concerts on sale"),
      page.items.length ? h("div", { class: "grid" }, page.items.map(concertCard)) : h("p", {}, "Nothing on sale right now."),
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
