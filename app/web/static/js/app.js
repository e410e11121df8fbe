// Hash router: each page renders into <main> and returns a cleanup (streams, timers, sockets).
import { logout, role, session } from "./api.js";
import { notice } from "./dom.js";
import { loginPage, signupPage } from "./pages/auth.js";
import { homePage, artistPage, concertPage } from "./pages/catalog.js";
import { waitingRoomPage } from "./pages/waiting.js";
import { seatsPage } from "./pages/seats.js";
import { ticketsPage } from "./pages/tickets.js";
import { organizerPage, saleDashboardPage } from "./pages/organizer.js";

const ROUTES = [
  [/^\/?$/, homePage],
  [/^\/login$/, loginPage],
  [/^\/signup$/, signupPage],
  [/^\/artists\/(\d+)$/, artistPage],
  [/^\/concerts\/(\d+)$/, concertPage],
  [/^\/concerts\/(\d+)\/seats$/, seatsPage],
  [/^\/sales\/(\d+)$/, waitingRoomPage],
  [/^\/tickets$/, ticketsPage],
  [/^\/organizer$/, organizerPage],
  [/^\/organizer\/sales\/(\d+)$/, saleDashboardPage],
];

let cleanup = null;

function updateNav() {
  const current = session() ? role() : "anon";
  for (const el of document.querySelectorAll("[data-auth]")) {
    const need = el.dataset.auth;
    el.hidden = need === "anon" ? current !== "anon" : need === "fan" ? current === "anon" : current !== "admin";
  }
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  notice(null);
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const main = document.getElementById("main");
  const params = new URLSearchParams(query || "");
  for (const [pattern, page] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      try {
        cleanup = (await page(main, ...match.slice(1).map(Number), params)) || null;
      } catch (error) {
        main.replaceChildren();
        notice(error.message || String(error));
      }
      const heading = main.querySelector("h1");
      if (heading) document.title = `${heading.textContent} · Ticket-Rush`;
      return;
    }
  }
  main.textContent = "Page not found.";
}

/** Pages that need an account send the fan to log in and back. */
export function requireLogin() {
  if (session()) return true;
  location.hash = `#/login?next=${encodeURIComponent(location.hash.slice(1) || "/")}`;
  return false;
}

window.addEventListener("hashchange", route);
window.addEventListener("tr:session", updateNav);
document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  location.hash = "#/";
});
updateNav();
route();
