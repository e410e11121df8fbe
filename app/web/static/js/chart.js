// A minimal line chart on <canvas> (no chart library: a few series, a few hundred points).
const COLOURS = ["#0b57d0", "#b3261e", "#0a6b2f", "#8a4b00", "#6b2fa0"];

export function lineChart(canvas, series, { title = "" } = {}) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 480;
  const height = canvas.clientHeight || 160;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const times = series.flatMap((s) => s.points.map((p) => p[0]));
  const maxV = Math.max(1, ...values);
  const minT = Math.min(...times);
  const maxT = Math.max(minT + 1, ...times);
  const left = 44, right = 8, top = 22, bottom = 18;
  const x = (t) => left + ((t - minT) / (maxT - minT)) * (width - left - right);
  const y = (v) => top + (1 - v / maxV) * (height - top - bottom);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#1a1a1a";
  ctx.fillText(title, left, 14);
  ctx.strokeStyle = "#c8c8c8";
  ctx.beginPath();
  ctx.moveTo(left, top);
  ctx.lineTo(left, height - bottom);
  ctx.lineTo(width - right, height - bottom);
  ctx.stroke();
  ctx.fillStyle = "#4a4a4a";
  ctx.fillText(String(Math.round(maxV)), 4, top + 8);
  ctx.fillText("0", 4, height - bottom);
  let legendX = left + ctx.measureText(title).width + 16;
  series.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = COLOURS[i % COLOURS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([t, v], j) => (j ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
    ctx.fillText(s.name, legendX, 14);
    legendX += ctx.measureText(s.name).width + 14;
  });
}
