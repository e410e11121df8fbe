// Organizer pages (admin accounts): create/open/close a sale, set the rate, watch it live.
import { api, role } from "../api.js";
import { h, notice, render, when } from "../dom.js";
import { messageFor } from "../messages.js";
import { lineChart } from "../chart.js";
import { requireLogin } from "../app.js";

const POLL_MS = 2000;
const KEEP_POINTS = 300;

function adminOnly(main) {
  if (!requireLogin()) return false;
  if (role() !== "admin") {
    render(main, h("h1", {}, "Organizer"), h("p", {}, "These pages are for organizer (admin) accounts."));
    return false;
  }
  return true;
}

function localInput(date) {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

export async function organizerPage(main) {
  if (!adminOnly(main)) return null;
  const concerts = await api("/concerts?limit=100");
  const now = new Date();
  const input = (label, attrs) => h("label", {}, label, h("input", { required: true, ...attrs }));
  const form = h("form", { class: "stack", "aria-label": "New sale" },
    h("label", {}, "Concert",
      h("select", { name: "concert_id", required: true },
        concerts.items.map((c) => h("option", { value: c.id }, `${c.title} (${c.status.replace("_", " ")})`)))),
    input("Opens at", { type: "datetime-local", step: 1, name: "opens_at", value: localInput(new Date(now.getTime() + 60000)) }),
    input("Closes at", { type: "datetime-local", step: 1, name: "closes_at", value: localInput(new Date(now.getTime() + 3600000)) }),
    input("Fans shopping at once (max active)", { type: "number", name: "max_active", min: 1, value: 1000 }),
    input("Admission rate (fans/s)", { type: "number", name: "initial_rate", min: 0.1, step: "any", value: 50 }),
    input("Minimum rate", { type: "number", name: "min_rate", min: 0.1, step: "any", value: 5 }),
    input("Maximum rate", { type: "number", name: "max_rate", min: 0.1, step: "any", value: 500 }),
    h("button", { class: "primary", type: "submit" }, "Create sale"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      const sale = await api("/sales", {
        method: "POST",
        body: {
          concert_id: Number(data.concert_id),
          opens_at: new Date(data.opens_at).toISOString(),
          closes_at: new Date(data.closes_at).toISOString(),
          max_active: Number(data.max_active),
          initial_rate: Number(data.initial_rate),
          min_rate: Number(data.min_rate),
          max_rate: Number(data.max_rate),
        },
      });
      location.hash = `#/organizer/sales/${sale.id}`;
    } catch (error) {
      notice(messageFor(error));
    }
  });
  const open = h("form", { class: "row", "aria-label": "Open a sale dashboard" },
    h("label", {}, "Sale id", h("input", { name: "sale", type: "number", min: 1, required: true })),
    h("button", { type: "submit" }, "Show"));
  open.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/organizer/sales/${new FormData(open).get("sale")}`;
  });
  render(main, h("h1", {}, "Organizer"), h("h2", {}, "Create a sale"), form, h("h2", {}, "Watch a sale"), open);
}

export async function saleDashboardPage(main, saleId) {
  if (!adminOnly(main)) return null;
  let sale = await api(`/sales/${saleId}`);
  const concert = await api(`/concerts/${sale.concert_id}`);
  const history = [];
  const cells = {};
  const cell = (key, label) => h("div", {}, h("dt", {}, label), (cells[key] = h("dd", { "data-testid": key }, "—")));
  const statusEl = h("p", { role: "status" });
  const queueChart = h("canvas", { role: "img", "aria-label": "Queue length and admitted fans over time" });
  const salesChart = h("canvas", { role: "img", "aria-label": "Seats sold and consumer lag over time" });
  const rateChart = h("canvas", { role: "img", "aria-label": "Admission rate over time" });
  const action = (label, path) => h("button", { type: "button", onclick: async () => {
    try {
      sale = await api(`/sales/${saleId}${path}`, { method: "POST" });
      notice(`Sale ${sale.status}.`, "ok");
      poll();
    } catch (error) {
      notice(messageFor(error));
    }
  } }, label);
  const rateForm = h("form", { class: "row", "aria-label": "Admission rate" },
    h("label", {}, "Rate (fans/s)", h("input", { name: "rate", type: "number", min: 0, step: "any", required: true })),
    h("label", {}, "Mode", h("select", { name: "mode" }, h("option", { value: "manual" }, "manual (pinned)"), h("option", { value: "auto" }, "auto (backpressure)"))),
    h("button", { type: "submit" }, "Set rate"));
  rateForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(rateForm));
    try {
      const rate = await api(`/sales/${saleId}/rate`, { method: "PUT", body: { rate: Number(data.rate), mode: data.mode } });
      notice(`Rate set to ${rate.rate} fans/s (${rate.mode}).`, "ok");
    } catch (error) {
      notice(messageFor(error));
    }
  });
  const shareLink = `${location.origin}/#/sales/${saleId}`;
  render(main,
    h("h1", {}, `Sale #${saleId} · ${concert.title}`),
    statusEl,
    h("p", {}, "Waiting-room link for fans: ", h("a", { href: `#/sales/${saleId}` }, shareLink)),
    h("div", { class: "row" }, action("Open now", ":open"), action("Close now", ":close")),
    rateForm,
    h("dl", { class: "stats card" },
      cell("queue_length", "In queue"), cell("pre_queue", "Pre-queue"), cell("admitted_active", "Shopping now"),
      cell("admitted_total", "Admitted"), cell("sold", "Sold"), cell("current_rate", "Rate (fans/s)"),
      cell("consumer_lag", "Consumer lag")),
    queueChart, salesChart, rateChart);

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    try {
      const [stats, seats] = await Promise.all([
        api(`/sales/${saleId}/stats`),
        api(`/concerts/${sale.concert_id}/availability`).catch(() => null),
      ]);
      const sold = seats ? seats.sections.reduce((n, s) => n + s.sold, 0) : 0;
      statusEl.textContent = `Status: ${stats.status}${stats.close_reason ? ` (${stats.close_reason})` : ""} · opens ${when(sale.opens_at)} · closes ${when(sale.closes_at)} · rate mode ${stats.rate_mode}`;
      const row = { ...stats, sold, t: Date.now() / 1000 };
      for (const key of Object.keys(cells)) {
        const value = row[key];
        cells[key].textContent = value === null || value === undefined ? "—" : typeof value === "number" ? String(Math.round(value * 10) / 10) : String(value);
      }
      history.push(row);
      if (history.length > KEEP_POINTS) history.shift();
      const points = (key) => history.map((r) => [r.t, Number(r[key]) || 0]);
      lineChart(queueChart, [{ name: "in queue", points: points("queue_length") }, { name: "admitted", points: points("admitted_total") }], { title: "Queue" });
      lineChart(salesChart, [{ name: "sold", points: points("sold") }, { name: "consumer lag", points: points("consumer_lag") }], { title: "Sales" });
      lineChart(rateChart, [{ name: "rate", points: points("current_rate") }, { name: "measured", points: points("measured_rate") }], { title: "Admission rate" });
    } catch (error) {
      notice(messageFor(error));
    }
    timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => clearTimeout(timer);
}
