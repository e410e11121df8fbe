// Tiny DOM helpers: elements are built with text nodes, never from HTML strings.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function render(target, ...children) {
  target.replaceChildren();
  append(target, children);
}

export function notice(text, kind = "error") {
  const box = document.getElementById("notice");
  if (!text) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.className = kind === "error" ? "notice" : `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.textContent = text;
  box.hidden = false;
}

export function money(minor, currency) {
  const digits = ["KRW", "JPY"].includes(currency) ? 0 : 2;
  return new Intl.NumberFormat("en", { style: "currency", currency, maximumFractionDigits: digits })
    .format(minor / 10 ** digits);
}

export function when(iso) {
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function loadScript(src) {
  return new Promise((resolve, reject) => {
    const found = document.querySelector(`script[src="${src}"]`);
    if (found?.dataset.loaded) return resolve();
    const el = found || document.createElement("script");
    el.addEventListener("load", () => { el.dataset.loaded = "1"; resolve(); });
    el.addEventListener("error", () => reject(new Error(`${src} could not be loaded`)));
    if (!found) { el.src = src; document.head.append(el); }
  });
}
