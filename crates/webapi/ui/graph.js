// Canvas drawings: a speed graph (download and upload, the last N samples) and the piece map.

import { fmtRate } from './util.js';

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** A ring of (down, up) samples. */
export class History {
  constructor(max = 150) { this.max = max; this.down = []; this.up = []; }
  push(d, u) {
    this.down.push(d || 0);
    this.up.push(u || 0);
    if (this.down.length > this.max) { this.down.shift(); this.up.shift(); }
  }
}

function fit(canvas) {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * dpr));
  const h = Math.max(1, Math.round(r.height * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return { w, h, dpr };
}

export function drawSpeed(canvas, hist, labels = true) {
  if (!canvas.isConnected || canvas.getClientRects().length === 0) return;
  const { w, h, dpr } = fit(canvas);
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  const top = Math.max(1, ...hist.down, ...hist.up);
  const n = hist.max;
  const x = (i, len) => w - (len - 1 - i) * (w / (n - 1));
  const line = (data, color) => {
    if (data.length < 2) return;
    g.beginPath();
    data.forEach((v, i) => {
      const px = x(i, data.length);
      const py = h - 2 - (v / top) * (h - 6);
      if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
    });
    g.strokeStyle = color;
    g.lineWidth = 1.5 * dpr;
    g.stroke();
    g.lineTo(x(data.length - 1, data.length), h);
    g.lineTo(x(0, data.length), h);
    g.closePath();
    g.globalAlpha = 0.15;
    g.fillStyle = color;
    g.fill();
    g.globalAlpha = 1;
  };
  line(hist.down, css('--down'));
  line(hist.up, css('--up'));
  if (labels) {
    g.fillStyle = css('--muted');
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    g.fillText('max ' + (fmtRate(top) || '0 B/s'), 4 * dpr, 12 * dpr);
  }
}

/** The piece map: one cell per piece (grouped when there are more pieces than columns
 * allow: a cell is then as dark as the share of its pieces present). */
export function drawPieces(canvas, bits, count) {
  if (!canvas.isConnected || canvas.getClientRects().length === 0) return;
  const { w, h, dpr } = fit(canvas);
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  if (!count) return;
  const cells = Math.min(count, 4000);
  // Square-ish cells, at most 24 px: a few pieces are a row of blocks, many a grid.
  let size = Math.min(24 * dpr, Math.sqrt((w * h) / cells));
  let cols = Math.max(1, Math.floor(w / size));
  while (Math.ceil(cells / cols) * size > h && size > 1) { size *= 0.9; cols = Math.max(1, Math.floor(w / size)); }
  const cw = size;
  const ch = size;
  const have = (i) => (bits[i >> 3] >> (7 - (i & 7))) & 1;
  const bar = css('--bar');
  const empty = css('--bar-bg');
  for (let c = 0; c < cells; c++) {
    const from = Math.floor((c * count) / cells);
    const to = Math.max(from + 1, Math.floor(((c + 1) * count) / cells));
    let n = 0;
    for (let p = from; p < to; p++) n += have(p);
    const share = n / (to - from);
    const px = (c % cols) * cw;
    const py = Math.floor(c / cols) * ch;
    g.fillStyle = empty;
    g.fillRect(px, py, Math.max(1, cw - 1), Math.max(1, ch - 1));
    if (share > 0) {
      g.globalAlpha = 0.25 + 0.75 * share;
      g.fillStyle = bar;
      g.fillRect(px, py, Math.max(1, cw - 1), Math.max(1, ch - 1));
      g.globalAlpha = 1;
    }
  }
}
