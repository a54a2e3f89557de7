// Small helpers: DOM building (text only, never markup from data) and formatting.

/** Makes an element. `attrs`: properties (`className`, `type`...), `dataset` and
 * `aria-*` / other attributes go through setAttribute; children are nodes or strings
 * (strings become text nodes, never markup). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k.startsWith('aria-') || k === 'role' || k === 'for' || k === 'scope') e.setAttribute(k, v === true ? 'true' : String(v));
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export const $ = (id) => document.getElementById(id);

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in SI units (Transmission's: 1 kB = 1000 B). */
export function fmtBytes(n) {
  if (n === undefined || n === null || n < 0) return '';
  let i = 0;
  let v = n;
  while (v >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + UNITS[i];
}

export function fmtRate(n) {
  if (!n) return '';
  return fmtBytes(n) + '/s';
}

/** Seconds as "3 h 12 m"; negative (unknown / not applicable) as "". */
export function fmtEta(s) {
  if (s === undefined || s === null || s < 0) return s === -2 ? '∞' : '';
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' m ' + (s % 60) + ' s';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + (m % 60) + ' m';
  const d = Math.floor(h / 24);
  return d > 3650 ? '∞' : d + ' d ' + (h % 24) + ' h';
}

/** A short date for the list: "12-07 01:39" this year, "2025-12-07" before. */
export function fmtShortDate(unix) {
  if (!unix) return '';
  const d = new Date(unix * 1000);
  const p = (x) => String(x).padStart(2, '0');
  if (d.getFullYear() !== new Date().getFullYear()) return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fmtDate(unix) {
  if (!unix) return '';
  const d = new Date(unix * 1000);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fmtRatio(r) {
  if (r === undefined || r === null || r < 0) return '';
  return r >= 100 ? r.toFixed(0) : r.toFixed(2);
}

export function fmtPct(f) {
  return (Math.floor(f * 1000) / 10).toFixed(1) + '%';
}

/** Transmission's status numbers. */
export const STATUS = ['Stopped', 'Queued to verify', 'Verifying', 'Queued', 'Downloading', 'Queued to seed', 'Seeding'];

export function statusText(t) {
  if (t.error) return 'Error: ' + (t.error_string || 'unknown');
  if (t.status === 4 && t.metadata_percent_complete !== undefined && t.metadata_percent_complete < 1) return 'Fetching metadata';
  if (t.status === 2) return 'Verifying ' + fmtPct(t.recheck_progress || 0);
  if (t.status === 0 && t.is_finished) return 'Finished';
  return STATUS[t.status] ?? 'Unknown';
}

/** The status filters: each a name, a label and a test. */
export const STATUS_FILTERS = [
  ['all', 'All', () => true],
  ['downloading', 'Downloading', (t) => t.status === 4],
  ['seeding', 'Seeding', (t) => t.status === 6],
  ['stopped', 'Stopped', (t) => t.status === 0],
  ['error', 'Error', (t) => !!t.error],
  ['checking', 'Checking', (t) => t.status === 1 || t.status === 2],
  ['queued', 'Queued', (t) => t.status === 3 || t.status === 5],
  ['active', 'Active', (t) => t.rate_download > 0 || t.rate_upload > 0],
];

/** The host of a tracker URL ("tracker.example.org"), or the URL if it has none. */
export function trackerHost(url) {
  try { return new URL(url).hostname || url; } catch { return url; }
}

/** Bytes (Uint8Array or ArrayBuffer) as base64, in chunks (no call-stack limit). */
export function toBase64(bytes) {
  const u = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(b64) {
  const s = atob(b64 || '');
  const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return u;
}

/** A short-lived message in the live region. */
export function toast(text, error = false) {
  const box = $('toasts');
  const t = el('div', { className: 'toast' + (error ? ' err' : '') }, text);
  box.append(t);
  setTimeout(() => t.remove(), error ? 8000 : 4000);
}
