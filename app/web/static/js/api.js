// The API client: bearer tokens from login, one silent refresh on 401, problem+json errors.
const STORE = "tr.auth";

export class ApiError extends Error {
  constructor(status, problem, headers) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    // The stable part of the problem `type` URI (e.g. "seat-taken").
    this.slug = (problem.type || "").split("/").pop() || `http-${status}`;
    this.retryAfter = Number(headers?.get("Retry-After")) || null;
  }
}

export function session() {
  try {
    return JSON.parse(localStorage.getItem(STORE)) || null;
  } catch {
    return null;
  }
}

function saveSession(value) {
  if (value) localStorage.setItem(STORE, JSON.stringify(value));
  else localStorage.removeItem(STORE);
  window.dispatchEvent(new Event("tr:session"));
}

export function role() {
  const s = session();
  if (!s) return null;
  try {
    const payload = JSON.parse(atob(s.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.role || "fan";
  } catch {
    return "fan";
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

let refreshing = null;

async function refresh() {
  const s = session();
  if (!s?.refresh_token) return false;
  refreshing ??= fetch("/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: s.refresh_token }),
  })
    .then(async (r) => {
      if (!r.ok) return false;
      saveSession({ ...s, ...(await r.json()) });
      return true;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export function authHeaders(extra = {}) {
  const s = session();
  return s ? { Authorization: `Bearer ${s.access_token}`, ...extra } : { ...extra };
}

/** `api("/path", {method, body, headers})` → parsed JSON; throws ApiError on a problem. */
export async function api(path, { method = "GET", body, headers = {}, retry = true } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json", ...headers }) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { type: "network-error", detail: "The server cannot be reached." });
  }
  if (response.status === 401 && retry && session() && (await refresh())) {
    return api(path, { method, body, headers, retry: false });
  }
  const data = await parse(response);
  if (!response.ok) throw new ApiError(response.status, data || {}, response.headers);
  return data;
}

export async function login(email, password) {
  const tokens = await api("/auth/login", { method: "POST", body: { email, password }, retry: false });
  saveSession({ ...tokens, email });
}

export async function logout() {
  const s = session();
  if (s?.refresh_token) {
    await api("/auth/logout", { method: "POST", body: { refresh_token: s.refresh_token }, retry: false }).catch(() => {});
  }
  saveSession(null);
}

export function newIdempotencyKey() {
  return `web-${crypto.randomUUID()}`;
}

export { refresh };
