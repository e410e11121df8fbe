// The artist's live player: hls.js on the channel's playback URL while the channel is LIVE.
import { api, session } from "./api.js";
import { h } from "./dom.js";

const HLS_SRC = "/static/vendor/hls.light.min.mjs";
const CHECK_MS = 5000;

export function livePlayer(artistId) {
  const video = h("video", { muted: true, playsinline: true, controls: true, "aria-label": "Live stream" });
  const title = h("h2", {}, "Live");
  const status = h("p", { class: "muted", role: "status" }, "No live stream right now.");
  const el = h("section", { class: "card player", "aria-label": "Live stream" }, title, status, video);
  video.hidden = true;
  let hls = null;
  let channel = null;
  let stopped = false;
  let checkTimer = null;
  let beatTimer = null;

  const stopPlayback = () => {
    hls?.destroy();
    hls = null;
    channel = null;
    clearTimeout(beatTimer);
    video.hidden = true;
    title.replaceChildren("Live");
  };

  const heartbeat = async () => {
    if (!channel || !session() || stopped) return;
    try {
      const beat = await api(`/channels/${channel.id}/heartbeat`, { method: "POST" });
      status.textContent = `${channel.title} · ${beat.viewer_count} watching`;
      beatTimer = setTimeout(heartbeat, Math.max(1, beat.next_heartbeat_s - 1) * 1000);
    } catch {
      beatTimer = setTimeout(heartbeat, 5000);
    }
  };

  const start = async (found) => {
    const { default: Hls } = await import(HLS_SRC);
    if (stopped) return;
    channel = found;
    title.replaceChildren("Live ", h("span", { class: "badge" }, "LIVE"));
    status.textContent = found.title;
    video.hidden = false;
    if (Hls.isSupported()) {
      const attach = () => {
        // No worker: a Content-Security-Policy without blob: workers stays intact.
        hls = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
        hls.on(Hls.Events.ERROR, (_event, data) => {
          if (!data.fatal) return;
          status.textContent = "The stream stalled; retrying…";
          if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
            hls.recoverMediaError();
            return;
          }
          // A network failure can be the playlist itself (a channel goes LIVE a moment before
          // nginx writes its first fragment), which startLoad() never fetches again: start over.
          hls.destroy();
          hls = null;
          setTimeout(() => { if (channel === found && !stopped) attach(); }, 2000);
        });
        hls.loadSource(found.playback_url);
        hls.attachMedia(video);
        video.play().catch(() => {});
      };
      attach();
    } else {
      video.src = found.playback_url;
      video.play().catch(() => {});
    }
    heartbeat();
  };

  const check = async () => {
    if (stopped) return;
    try {
      const page = await api(`/channels?artist_id=${artistId}&live=true&limit=1`);
      const found = page.items[0] || null;
      if (found && !channel) await start(found);
      else if (!found && channel) {
        stopPlayback();
        status.textContent = "The stream has ended.";
      }
    } catch {
      // The next check retries; the player keeps whatever it has.
    }
    checkTimer = setTimeout(check, CHECK_MS);
  };
  check();

  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(checkTimer);
      stopPlayback();
    },
  };
}
