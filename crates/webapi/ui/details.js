// The details pane of one torrent: general facts, the file tree (wanted and priority,
// editable while it runs), peers, trackers, the piece map and its speed graph. Only the
// open tab's fields are fetched (peers and pieces need a round trip to the running torrent).

import { $, el, clear, fmtBytes, fmtRate, fmtEta, fmtDate, fmtRatio, fmtPct, statusText, fromBase64, toast } from './util.js';
import { drawPieces, drawSpeed, History } from './graph.js';

const MEDIA = /\.(mp4|m4v|mkv|webm|avi|mov|mpe?g|ts|ogv|mp3|m4a|aac|flac|ogg|oga|opus|wav)$/i;
const GENERAL = ['id', 'name', 'hash_string', 'status', 'error', 'error_string', 'total_size', 'size_when_done', 'left_until_done',
  'have_valid', 'percent_done', 'recheck_progress', 'piece_count', 'piece_size', 'added_date', 'done_date', 'start_date',
  'activity_date', 'date_created', 'download_dir', 'comment', 'creator', 'is_private', 'magnet_link', 'downloaded_ever',
  'uploaded_ever', 'corrupt_ever', 'upload_ratio', 'seconds_downloading', 'seconds_seeding', 'rate_download', 'rate_upload',
  'eta', 'labels', 'queue_position', 'peers_connected', 'metadata_percent_complete', 'is_finished'];
const TAB_FIELDS = {
  general: [],
  files: ['files', 'file_stats'],
  peers: ['peers'],
  trackers: ['tracker_stats'],
  pieces: ['pieces'],
  speed: [],
};
const PRIO = [['-1', 'Low'], ['0', 'Normal'], ['1', 'High']];

export class Details {
  constructor(rpc, onChanged) {
    this.rpc = rpc;
    this.onChanged = onChanged;
    this.id = null;
    this.tab = 'general';
    this.hist = new History(150);
    this.files = null; // { key, nodes, byIndex }
    this.busy = false;
    for (const name of Object.keys(TAB_FIELDS)) {
      $('tab-' + name).addEventListener('click', () => this.showTab(name));
    }
    $('details').addEventListener('keydown', (e) => {
      if (e.target.getAttribute('role') !== 'tab') return;
      const names = Object.keys(TAB_FIELDS);
      const i = names.indexOf(this.tab);
      if (e.key === 'ArrowRight') { this.showTab(names[(i + 1) % names.length]); $('tab-' + this.tab).focus(); }
      if (e.key === 'ArrowLeft') { this.showTab(names[(i + names.length - 1) % names.length]); $('tab-' + this.tab).focus(); }
    });
  }

  get open() { return !$('details').hidden; }

  show(id) {
    if (this.id !== id) { this.hist = new History(150); this.files = null; clear($('files')); }
    this.id = id;
    $('details').hidden = false;
    this.refresh();
  }

  close() {
    $('details').hidden = true;
    this.id = null;
  }

  showTab(name) {
    this.tab = name;
    for (const n of Object.keys(TAB_FIELDS)) {
      $('tab-' + n).setAttribute('aria-selected', String(n === name));
      $('tab-' + n).tabIndex = n === name ? 0 : -1;
      $('pane-' + n).hidden = n !== name;
    }
    this.refresh();
  }

  /** A sample of the list's data for the speed graph (called on every poll). */
  sample(t) {
    if (t && t.id === this.id) this.hist.push(t.rate_download, t.rate_upload);
    if (this.open && this.tab === 'speed') drawSpeed($('torrent-graph'), this.hist);
  }

  async refresh() {
    if (this.id === null || !this.open || this.busy) return;
    this.busy = true;
    const id = this.id;
    try {
      const r = await this.rpc.call('torrent_get', { ids: [id], fields: [...GENERAL, ...TAB_FIELDS[this.tab]] });
      if (id !== this.id) return;
      const t = r.torrents[0];
      if (!t) { this.close(); return; }
      this.t = t;
      $('details-title').textContent = t.name;
      this.general(t);
      if (this.tab === 'files') this.renderFiles(t);
      if (this.tab === 'peers') this.peers(t);
      if (this.tab === 'trackers') this.trackers(t);
      if (this.tab === 'pieces') this.pieces(t);
      if (this.tab === 'speed') drawSpeed($('torrent-graph'), this.hist);
    } catch (e) {
      if (e.name === 'AuthError') throw e;
      console.warn('details', e);
    } finally {
      this.busy = false;
    }
  }

  general(t) {
    const dl = $('general');
    clear(dl);
    const row = (k, v, cls) => {
      if (v === undefined || v === null || v === '') return;
      dl.append(el('dt', {}, k), el('dd', { className: cls || '' }, String(v)));
    };
    row('Status', statusText(t), t.error ? 'err' : '');
    row('Progress', fmtPct(t.percent_done) + ' of ' + fmtBytes(t.size_when_done));
    row('Size', fmtBytes(t.total_size) + (t.piece_count ? ` (${t.piece_count} pieces of ${fmtBytes(t.piece_size)})` : ''));
    row('Have', fmtBytes(t.have_valid));
    row('Downloaded', fmtBytes(t.downloaded_ever) + (t.corrupt_ever ? ` (${fmtBytes(t.corrupt_ever)} corrupt)` : ''));
    row('Uploaded', fmtBytes(t.uploaded_ever) + ' (ratio ' + fmtRatio(t.upload_ratio) + ')');
    row('Speed', '↓ ' + (fmtRate(t.rate_download) || '0') + '  ↑ ' + (fmtRate(t.rate_upload) || '0'));
    row('ETA', fmtEta(t.eta));
    row('Peers', t.peers_connected ? String(t.peers_connected) : '');
    row('Info-hash', t.hash_string);
    row('Save path', t.download_dir);
    row('Added', fmtDate(t.added_date));
    row('Completed', fmtDate(t.done_date));
    row('Created', [fmtDate(t.date_created), t.creator ? 'by ' + t.creator : ''].filter(Boolean).join(' '));
    row('Last activity', fmtDate(t.activity_date));
    row('Labels', (t.labels || []).join(', '));
    row('Queue position', t.queue_position);
    row('Private', t.is_private ? 'yes' : 'no');
    row('Time active', fmtEta(t.seconds_downloading) + ' downloading, ' + fmtEta(t.seconds_seeding) + ' seeding');
    row('Comment', t.comment);
    row('Error', t.error_string, 'err');
    row('Magnet', t.magnet_link);
  }

  // --- files -------------------------------------------------------------------------------

  renderFiles(t) {
    const box = $('files');
    const files = t.files || [];
    const stats = t.file_stats || [];
    if (!files.length) {
      clear(box);
      this.files = null;
      box.append(el('p', { className: 'muted' }, t.metadata_percent_complete < 1 ? 'The file list comes with the metadata.' : 'No files.'));
      return;
    }
    const key = t.id + ':' + files.length;
    if (!this.files || this.files.key !== key) this.buildTree(t, files, box, key);
    const f = this.files;
    // Files first, then folders bottom-up from their children.
    for (const [i, node] of f.byIndex) {
      node.length = files[i].length;
      node.done = stats[i]?.bytes_completed ?? files[i].bytes_completed ?? 0;
      node.wanted = stats[i]?.wanted ?? true;
      node.prio = String(stats[i]?.priority ?? 0);
    }
    const agg = (n) => {
      if (n.index !== undefined) return;
      n.length = 0; n.done = 0;
      const w = new Set(); const p = new Set();
      for (const c of n.children.values()) { agg(c); n.length += c.length; n.done += c.done; w.add(c.wanted === 'mixed' ? 'mixed' : c.wanted); p.add(c.prio); }
      n.wanted = w.size === 1 ? [...w][0] : 'mixed';
      n.prio = p.size === 1 ? [...p][0] : '';
    };
    agg(f.root);
    for (const n of f.nodes) {
      if (document.activeElement !== n.cb) {
        n.cb.checked = n.wanted === true;
        n.cb.indeterminate = n.wanted === 'mixed';
      }
      n.size.textContent = fmtBytes(n.length);
      n.prog.textContent = n.length ? fmtPct(n.done / n.length) : '';
      if (document.activeElement !== n.sel) n.sel.value = n.prio;
    }
  }

  buildTree(t, files, box, key) {
    clear(box);
    const root = { name: '', children: new Map(), depth: -1 };
    const byIndex = new Map();
    files.forEach((f, i) => {
      const parts = f.name.split('/');
      let n = root;
      parts.forEach((p, j) => {
        if (!n.children.has(p)) n.children.set(p, { name: p, children: new Map(), depth: j });
        n = n.children.get(p);
      });
      n.index = i;
      byIndex.set(i, n);
    });
    const nodes = [];
    const indices = (n) => (n.index !== undefined ? [n.index] : [...n.children.values()].flatMap(indices));
    const add = (n) => {
      const cb = el('input', { type: 'checkbox', 'aria-label': 'Download ' + n.name });
      const sel = el('select', { 'aria-label': 'Priority of ' + n.name });
      sel.append(el('option', { value: '', disabled: true, hidden: true }, 'Mixed'));
      for (const [v, label] of PRIO) sel.append(el('option', { value: v }, label));
      const size = el('span', { className: 'num' });
      const prog = el('span', { className: 'num prog' });
      const label = el('label', {}, cb, el('span', {}, (n.index === undefined ? '📁 ' : '') + n.name));
      label.style.paddingLeft = n.depth * 18 + 'px';
      // Audio and video play while they download: the daemon's /stream/ URL fetches the
      // pieces around what the player reads first.
      const media = n.index !== undefined && MEDIA.test(n.name);
      const play = media
        ? el('a', { className: 'play', href: `/stream/${t.hash_string}/${n.index}`, target: '_blank', rel: 'noopener', title: 'Play (streams while it downloads)', 'aria-label': 'Play ' + n.name }, '▶')
        : el('span', { className: 'play' });
      const row = el('div', { className: 'node' + (n.index === undefined ? ' dir' : ''), role: 'treeitem', dataset: { index: n.index ?? '' } }, label, size, prog, play, sel);
      box.append(row);
      Object.assign(n, { cb, sel, size, prog });
      nodes.push(n);
      cb.addEventListener('change', () => this.setFiles(indices(n), cb.checked ? 'files_wanted' : 'files_unwanted'));
      sel.addEventListener('change', () => {
        const k = { '-1': 'priority_low', 0: 'priority_normal', 1: 'priority_high' }[sel.value];
        if (k) this.setFiles(indices(n), k);
      });
      for (const c of n.children.values()) add(c);
    };
    for (const c of root.children.values()) add(c);
    box.setAttribute('role', 'tree');
    box.setAttribute('aria-label', 'Files');
    this.files = { key, root, nodes, byIndex };
  }

  async setFiles(list, field) {
    if (!list.length || this.id === null) return;
    try {
      await this.rpc.call('torrent_set', { ids: [this.id], [field]: list });
    } catch (e) {
      toast('Could not change the files: ' + e.message, true);
    }
    await this.refresh();
    this.onChanged([this.id]);
  }

  // --- peers, trackers, pieces ----------------------------------------------------------------

  peers(t) {
    const body = $('peers');
    clear(body);
    const list = [...(t.peers || [])].sort((a, b) => b.rate_to_client + b.rate_to_peer - a.rate_to_client - a.rate_to_peer);
    if (!list.length) body.append(el('tr', {}, el('td', { colSpan: 6, className: 'muted' }, t.status === 0 ? 'Stopped: no peers.' : 'No peers connected.')));
    for (const p of list) {
      body.append(el('tr', {},
        el('td', {}, p.address.includes(':') ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`),
        el('td', {}, p.client_name),
        el('td', { title: 'D downloading, U uploading, d/u interested, K/? choked, E encrypted, I incoming' }, p.flag_str),
        el('td', {}, fmtPct(p.progress)),
        el('td', { className: 'down' }, fmtRate(p.rate_to_client)),
        el('td', { className: 'up' }, fmtRate(p.rate_to_peer))));
    }
  }

  trackers(t) {
    const body = $('trackers');
    clear(body);
    const list = t.tracker_stats || [];
    if (!list.length) body.append(el('tr', {}, el('td', { colSpan: 6, className: 'muted' }, 'No trackers (DHT, PEX and peers in the link only).')));
    for (const s of list) {
      const result = s.has_announced ? (s.last_announce_succeeded ? 'OK' : s.last_announce_result || 'failed') : 'not yet';
      body.append(el('tr', {},
        el('td', {}, String(s.tier)),
        el('td', { className: 'wrap' }, s.announce),
        el('td', {}, fmtDate(s.last_announce_time)),
        el('td', { className: 'wrap' + (s.has_announced && !s.last_announce_succeeded ? ' err' : '') }, result),
        el('td', {}, s.last_announce_peer_count >= 0 ? String(s.last_announce_peer_count) : ''),
        el('td', {}, fmtDate(s.next_announce_time))));
    }
  }

  pieces(t) {
    const bits = fromBase64(t.pieces);
    let have = 0;
    for (let i = 0; i < t.piece_count; i++) have += (bits[i >> 3] >> (7 - (i & 7))) & 1;
    $('pieces-info').textContent = t.piece_count
      ? `${have} of ${t.piece_count} pieces (${fmtBytes(t.piece_size)} each)` + (bits.length ? '' : ' — the map shows while the torrent runs')
      : 'No metadata yet.';
    drawPieces($('pieces-canvas'), bits, bits.length ? t.piece_count : 0);
  }
}
