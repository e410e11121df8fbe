// Server-Sent Events over fetch: EventSource cannot send the Authorization header.
import { ApiError, authHeaders, refresh } from "./api.js";

function parseBlock(block) {
  const event = { event: "message", data: "", id: null, retry: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") data.push(value);
    else if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
    else if (field === "retry") event.retry = Number(value);
  }
  event.data = data.join("\n");
  return event;
}

/**
 * Follow `url` until `onEvent` returns true (a terminal state) or `signal` aborts. Reconnects
 * after the server's `retry` delay (jittered by the server), so a dropped stream costs one
 * request per fan, not a burst. `onError(ApiError)` gets problems and may return true to stop.
 */
export async function follow(url, { onEvent, onError, signal }) {
  let retryMs = 3000;
  let refreshed = false;
  while (!signal.aborted) {
    let done = false;
    try {
      const response = await fetch(url, {
        headers: authHeaders({ Accept: "text/event-stream" }),
        signal,
        cache: "no-store",
      });
      if (response.status === 401 && !refreshed && (await refresh())) {
        refreshed = true;
        continue;
      }
      if (!response.ok) {
        const problem = await response.json().catch(() => ({}));
        if (onError(new ApiError(response.status, problem, response.headers))) return;
        retryMs = Math.max(retryMs, (Number(response.headers.get("Retry-After")) || 3) * 1000);
      } else {
        refreshed = false;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        while (!done) {
          const { value, done: ended } = await reader.read();
          if (ended) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = parseBlock(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (event.retry) retryMs = event.retry;
            if (event.data && onEvent(event)) {
              done = true;
              break;
            }
          }
        }
        reader.cancel().catch(() => {});
        if (done) return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (onError(new ApiError(0, { type: "network-error", detail: String(error) }))) return;
    }
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
}
