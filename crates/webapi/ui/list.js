// The torrent list: virtualised (only the rows in view, plus a few, are in the DOM; a
// spacer gives the scroll height), sortable by any column, multi-select by mouse and keys.

import { el, fmtBytes, fmtRate, fmtEta, fmtRatio, fmtDate, fmtShortDate, fmtPct, statusText } from './util.js';

const etaKey = (t) => (t.eta >= 0 ? t.eta : t.eta === -2 ? 1e12 : 1e13);

export const COLUMNS = [
  { key: 'queue', label: '#', title: 'Queue position', num: true, value: (t) => String((t.queue_position ?? 0) + 1), sort: (t) => t.queue_position || 0 },
  { key: 'name', label: 'Name', value: (t) => t.name || '', sort: (t) => (t.name || '').toLowerCase() },
  { key: 'size', label: 'Size', num: true, value: (t) => fmtBytes(t.size_when_done || t.total_size), sort: (t) => t.size_when_done || t.total_size || 0 },
  { key: 'progress', label: 'Progress', sort: (t) => (t.status === 2 ? t.recheck_progress : t.percent_done) || 0 },
  { key: 'status', label: 'Status', value: statusText, sort: (t) => (t.error ? 10 : t.status) },
  { key: 'down', label: 'Down', num: true, value: (t) => fmtRate(t.rate_download), sort: (t) => t.rate_download || 0 },
  { key: 'up', label: 'Up', num: true, value: (t) => fmtRate(t.rate_upload), sort: (t) => t.rate_upload || 0 },
  { key: 'eta', label: 'ETA', num: true, value: (t) => fmtEta(t.eta), sort: etaKey },
  { key: 'ratio', label: 'Ratio', num: true, value: (t) => fmtRatio(t.upload_ratio), sort: (t) => t.upload_ratio || 0 },
  { key: 'peers', label: 'Peers', title: 'Peers connected (sending to us)', num: true, value: (t) => (t.peers_connected ? `${t.peers_connected} (${t.peers_sending_to_us})` : ''), sort: (t) => t.peers_connected || 0 },
  { key: 'added', label: 'Added', num: true, value: (t) => fmtShortDate(t.added_date), sort: (t) => t.added_date || 0 },
  { key: 'label', label: 'Label', value: (t) => (t.labels || []).join(', '), sort: (t) => (t.labels || []).join(',').toLowerCase() },
];

function barClass(t) {
  if (t.error) return 'bar error';
  if (t.status === 0) return 'bar stopped';
  if (t.status === 6 || t.status === 5) return 'bar seeding';
  return 'bar';
}

export class VirtualList {
  constructor(root, spacer, head, { onSelect, onOpen, onSort }) {
    this.root = root;
    this.spacer = spacer;
    this.head = head;
    this.ids = [];
    this.byId = new Map();
    this.pos = new Map();
    this.selected = new Set();
    this.anchor = null;
    this.focusId = null;
    this.pool = [];
    this.rowH = 30;
    this.sortKey = 'name';
    this.sortDir = 1;
    this.onSelect = onSelect;
    this.onOpen = onOpen;
    this.onSort = onSort;
    this.frame = 0;
    this.buildHead();
    root.addEventListener('scroll', () => this.schedule(), { passive: true });
    window.addEventListener('resize', () => { this.measure(); this.schedule(); });
    root.addEventListener('click', (e) => this.click(e));
    root.addEventListener('dblclick', (e) => { const id = this.idAt(e); if (id !== null) this.onOpen(id); });
    root.addEventListener('keydown', (e) => this.key(e));
    this.measure();
  }

  buildHead() {
    for (const c of COLUMNS) {
      if (c.hidden) continue;
      const b = el('button', { type: 'button', className: (c.num ? 'num ' : '') + 'h-' + c.key, title: c.title || 'Sort by ' + c.label.toLowerCase(), dataset: { key: c.key } }, c.label);
      b.addEventListener('click', () => this.sortBy(c.key));
      this.head.append(b);
    }
    this.markSort();
  }

  markSort() {
    for (const b of this.head.querySelectorAll('button')) {
      const on = b.dataset.key === this.sortKey;
      const dir = this.sortDir > 0 ? 'ascending' : 'descending';
      if (on) b.dataset.sort = dir; else delete b.dataset.sort;
      b.setAttribute('aria-pressed', String(on));
      b.setAttribute('aria-label', b.textContent + (on ? ', sorted ' + dir : ''));
    }
  }

  sortBy(key, dir) {
    if (dir) this.sortDir = dir;
    else if (this.sortKey === key) this.sortDir = -this.sortDir;
    else this.sortDir = ['down', 'up', 'added', 'size', 'ratio', 'peers'].includes(key) ? -1 : 1;
    this.sortKey = key;
    this.markSort();
    this.onSort(this.sortKey, this.sortDir);
  }

  /** Sorts `list` (torrent objects) in place by the current column; ties by name, then id. */
  sort(list) {
    const col = COLUMNS.find((c) => c.key === this.sortKey) || COLUMNS[0];
    const d = this.sortDir;
    const keyed = list.map((t) => [col.sort(t), (t.name || '').toLowerCase(), t.id, t]);
    keyed.sort((a, b) => (a[0] < b[0] ? -d : a[0] > b[0] ? d : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : a[2] - b[2]));
    return keyed.map((k) => k[3]);
  }

  measure() {
    const v = parseFloat(getComputedStyle(this.root).getPropertyValue('--row-h'));
    const h = Number.isFinite(v) && v > 0 ? v : 30;
    if (h !== this.rowH) {
      this.rowH = h;
      for (const r of this.pool) r.remove();
      this.pool = [];
    }
  }

  /** New rows (ids in display order); keeps the selection of ids still there. */
  setRows(ids, byId) {
    this.ids = ids;
    this.byId = byId;
    this.pos = new Map(ids.map((id, i) => [id, i]));
    this.spacer.style.height = ids.length * this.rowH + 'px';
    this.render();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  makeRow() {
    const r = el('div', { className: 'row', role: 'option', 'aria-selected': 'false' });
    r.cells = {};
    for (const c of COLUMNS) {
      if (c.hidden) continue;
      let cell;
      if (c.key === 'progress') {
        const fill = el('i');
        const txt = el('b');
        cell = el('span', { className: 'c-progress' }, el('div', { className: 'bar' }, fill, txt));
        cell.fill = fill;
        cell.txt = txt;
      } else {
        cell = el('span', { className: 'c-' + c.key + (c.num ? ' num' : '') });
      }
      r.cells[c.key] = cell;
      r.append(cell);
    }
    r.sub = el('span', { className: 'sub' });
    r.append(r.sub);
    r.vals = {};
    return r;
  }

  /** Writes a cell only when its text changed (most rows change rarely). */
  set(r, key, text) {
    if (r.vals[key] !== text) { r.vals[key] = text; (key === 'sub' ? r.sub : r.cells[key]).textContent = text; }
  }

  render() {
    const n = this.ids.length;
    const h = this.rowH;
    const top = this.root.scrollTop;
    const height = this.root.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / h) - 4);
    const last = Math.min(n, Math.ceil((top + height) / h) + 4);
    const need = Math.max(0, last - first);
    while (this.pool.length < need) { const r = this.makeRow(); this.pool.push(r); this.root.append(r); }
    for (let k = 0; k < this.pool.length; k++) {
      const r = this.pool[k];
      const i = first + k;
      if (i >= last) { if (!r.hidden) { r.hidden = true; r.vals = {}; r.tid = null; r.removeAttribute('id'); } continue; }
      r.hidden = false;
      const t = this.byId.get(this.ids[i]);
      if (r.tid !== t.id) { r.tid = t.id; r.id = 'row-' + t.id; r.dataset.id = t.id; }
      const y = i * h + 'px';
      if (r.vals.y !== y) { r.vals.y = y; r.style.top = y; }
      for (const c of COLUMNS) {
        if (c.hidden || c.key === 'progress') continue;
        this.set(r, c.key, c.value(t));
      }
      const frac = t.status === 2 ? t.recheck_progress || 0 : t.percent_done || 0;
      const pct = fmtPct(frac);
      if (r.vals.pct !== pct) { r.vals.pct = pct; r.cells.progress.fill.style.width = (frac * 100).toFixed(1) + '%'; r.cells.progress.txt.textContent = pct; }
      const bc = barClass(t);
      if (r.vals.bc !== bc) { r.vals.bc = bc; r.cells.progress.firstChild.className = bc; }
      const sub = [fmtBytes(t.size_when_done || t.total_size), t.rate_download ? '↓ ' + fmtRate(t.rate_download) : '', t.rate_upload ? '↑ ' + fmtRate(t.rate_upload) : '', fmtEta(t.eta)].filter(Boolean).join(' · ');
      this.set(r, 'sub', sub);
      const sel = this.selected.has(t.id) ? 'true' : 'false';
      if (r.vals.sel !== sel) { r.vals.sel = sel; r.setAttribute('aria-selected', sel); }
      r.classList.toggle('focus', this.focusId === t.id);
      r.classList.toggle('err', !!t.error);
      r.title = (t.name || '') + (t.added_date ? '\nAdded ' + fmtDate(t.added_date) : '');
    }
    if (this.focusId !== null && this.pos.has(this.focusId)) this.root.setAttribute('aria-activedescendant', 'row-' + this.focusId);
    else this.root.removeAttribute('aria-activedescendant');
  }

  idAt(e) {
    const r = e.target.closest('.row');
    return r && r.dataset.id !== undefined && !r.hidden ? Number(r.dataset.id) : null;
  }

  changed() {
    this.render();
    this.onSelect([...this.selected], this.focusId);
  }

  click(e) {
    const id = this.idAt(e);
    if (id === null) return;
    if (e.shiftKey && this.anchor !== null && this.pos.has(this.anchor)) {
      this.selectRange(this.anchor, id, e.ctrlKey || e.metaKey);
    } else if (e.ctrlKey || e.metaKey) {
      if (this.selected.has(id)) this.selected.delete(id); else this.selected.add(id);
      this.anchor = id;
    } else {
      this.selected = new Set([id]);
      this.anchor = id;
    }
    this.focusId = id;
    this.changed();
    if (window.matchMedia('(max-width: 760px)').matches && !e.shiftKey && !e.ctrlKey && !e.metaKey) this.onOpen(id);
  }

  selectRange(from, to, add) {
    const a = this.pos.get(from);
    const b = this.pos.get(to);
    if (!add) this.selected = new Set();
    for (let i = Math.min(a, b); i <= Math.max(a, b); i++) this.selected.add(this.ids[i]);
  }

  selectAll() {
    this.selected = new Set(this.ids);
    this.changed();
  }

  select(ids) {
    this.selected = new Set(ids);
    this.focusId = ids.length ? ids[ids.length - 1] : null;
    this.anchor = this.focusId;
    this.changed();
  }

  scrollTo(i) {
    const h = this.rowH;
    const top = i * h;
    if (top < this.root.scrollTop) this.root.scrollTop = top;
    else if (top + h > this.root.scrollTop + this.root.clientHeight) this.root.scrollTop = top + h - this.root.clientHeight;
  }

  key(e) {
    if (e.target !== this.root) return;
    const n = this.ids.length;
    if (!n) return;
    const cur = this.focusId !== null && this.pos.has(this.focusId) ? this.pos.get(this.focusId) : -1;
    const page = Math.max(1, Math.floor(this.root.clientHeight / this.rowH) - 1);
    let to = null;
    switch (e.key) {
      case 'ArrowDown': to = Math.min(n - 1, cur + 1); break;
      case 'ArrowUp': to = Math.max(0, cur < 0 ? 0 : cur - 1); break;
      case 'PageDown': if (!e.shiftKey) to = Math.min(n - 1, cur + page); break;
      case 'PageUp': if (!e.shiftKey) to = Math.max(0, cur - page); break;
      case 'Home': if (!e.shiftKey) to = 0; break;
      case 'End': if (!e.shiftKey) to = n - 1; break;
      case ' ':
        if (cur >= 0) {
          const id = this.ids[cur];
          if (this.selected.has(id)) this.selected.delete(id); else this.selected.add(id);
          this.anchor = id;
          this.changed();
        }
        e.preventDefault();
        e.stopPropagation();
        return;
      case 'Enter':
        if (cur >= 0) this.onOpen(this.ids[cur]);
        e.preventDefault();
        e.stopPropagation();
        return;
      case 'a':
        if (e.ctrlKey || e.metaKey) { this.selectAll(); e.preventDefault(); e.stopPropagation(); }
        return;
      default: return;
    }
    if (to === null) return;
    e.preventDefault();
    e.stopPropagation();
    const id = this.ids[to];
    if (e.shiftKey) {
      if (this.anchor === null || !this.pos.has(this.anchor)) this.anchor = this.ids[Math.max(cur, 0)];
      this.selectRange(this.anchor, id, false);
    } else if (!e.ctrlKey && !e.metaKey) {
      this.selected = new Set([id]);
      this.anchor = id;
    }
    this.focusId = id;
    this.scrollTo(to);
    this.changed();
  }
}
