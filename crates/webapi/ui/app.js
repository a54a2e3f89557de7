// spate's web UI: the whole list once, then every 2 s only what changed (torrent-get of
// "recently-active", which also names the removed ids) and the session's totals, in one
// JSON-RPC batch; events (added, completed, error, removed...) from the SSE stream. Nothing
// is polled while the tab is hidden.

import { $, el, clear, fmtBytes, fmtRate, toast, STATUS_FILTERS, trackerHost } from './util.js';
import { Rpc, login, basicHeader } from './rpc.js';
import { VirtualList } from './list.js';
import { Details } from './details.js';
import { AddDialog } from './add.js';
import { Settings } from './settings.js';
import { History, drawSpeed } from './graph.js';

const LIST_FIELDS = ['id', 'name', 'status', 'error', 'error_string', 'percent_done', 'recheck_progress', 'total_size',
  'size_when_done', 'left_until_done', 'rate_download', 'rate_upload', 'eta', 'upload_ratio', 'peers_connected',
  'peers_sending_to_us', 'added_date', 'labels', 'queue_position', 'trackers', 'metadata_percent_complete', 'is_finished',
  'hash_string'];
/** What a poll asks of the changed torrents: what moves (the name, trackers, hash and
 * dates of a torrent come with its first fetch, and again after an action or event). */
const POLL_FIELDS = ['id', 'status', 'error', 'error_string', 'percent_done', 'recheck_progress', 'total_size',
  'size_when_done', 'left_until_done', 'rate_download', 'rate_upload', 'eta', 'upload_ratio', 'peers_connected',
  'peers_sending_to_us', 'labels', 'queue_position', 'metadata_percent_complete', 'is_finished'];
const POLL_MS = 2000;

const rpc = new Rpc();
const torrents = new Map();
const filter = { status: 'all', label: null, tracker: null, text: '' };
const session = { values: {}, stats: {} };
const hist = new History(150);
/** Timings for the tests and the curious: `window.spatePerf`. */
const perf = { fullLoad: null, polls: [], renders: [] };
window.spatePerf = perf;

let list;
let details;
let adder;
let settings;
let pollTimer = 0;
let polling = false;
let started = false;
let events = null;
let pollCount = 0;
let sidebarSig = '';

// --- start, login --------------------------------------------------------------------------

function authLost() {
  stopPolling();
  if (events) { events.stop(); events = null; }
  started = false;
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-user').focus();
}

/** Runs `f`; a lost login shows the login page, other errors a message. */
async function guarded(f, what = '') {
  try {
    return await f();
  } catch (e) {
    if (e.name === 'AuthError') authLost();
    else toast((what ? what + ': ' : '') + e.message, true);
    return undefined;
  }
}

async function start() {
  try {
    await refreshSession();
  } catch (e) {
    if (e.name === 'AuthError') { authLost(); return; }
    toast('The daemon does not answer: ' + e.message, true);
    setTimeout(start, 5000);
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  started = true;
  if (sessionStorage.getItem('spate-login') === '1') $('btn-logout').hidden = false;
  list.measure();
  await fullLoad();
  schedulePoll();
  events = rpc.events(onEvent, authLost);
  handleHash();
}

async function onLogin(e) {
  e.preventDefault();
  const user = $('login-user').value;
  const pass = $('login-pass').value;
  $('login-error').textContent = '';
  try {
    const r = await login(user, pass);
    if (r === 'fail') { $('login-error').textContent = 'Wrong user name or password.'; return; }
    rpc.basic = r === 'absent' ? basicHeader(user, pass) : null;
    await refreshSession();
    $('btn-logout').hidden = false;
    sessionStorage.setItem('spate-login', '1');
  } catch (err) {
    rpc.basic = null;
    $('login-error').textContent = err.name === 'AuthError' ? 'Wrong user name or password.' : 'Cannot log in: ' + err.message;
    return;
  }
  $('login-pass').value = '';
  start();
}

// --- data ------------------------------------------------------------------------------------

function merge(list_) {
  for (const t of list_) {
    const old = torrents.get(t.id);
    torrents.set(t.id, old ? Object.assign(old, t) : t);
  }
}

async function fullLoad() {
  const t0 = performance.now();
  const r = await guarded(() => rpc.call('torrent_get', { fields: LIST_FIELDS }), 'Loading the list');
  if (!r) return;
  const t1 = performance.now();
  torrents.clear();
  merge(r.torrents);
  update();
  await new Promise((res) => requestAnimationFrame(() => res()));
  const t2 = performance.now();
  perf.fullLoad = { rows: r.torrents.length, fetchMs: Math.round(t1 - t0), renderMs: Math.round(t2 - t1), totalMs: Math.round(t2 - t0) };
}

async function refreshIds(ids) {
  if (!ids.length) return;
  const r = await guarded(() => rpc.call('torrent_get', { ids, fields: LIST_FIELDS }));
  if (!r) return;
  const seen = new Set(r.torrents.map((t) => t.id));
  merge(r.torrents);
  for (const id of ids) if (!seen.has(id)) torrents.delete(id);
  update();
  if (details.open) details.refresh().catch(() => {});
}

async function refreshSession() {
  const [values, stats] = await rpc.batch([['session_get', {}], ['session_stats', {}]]);
  if (values instanceof Error) throw values;
  session.values = values;
  if (!(stats instanceof Error)) session.stats = stats;
  statusbar();
}

async function poll() {
  pollTimer = 0;
  if (!started || document.hidden || polling) return;
  polling = true;
  const t0 = performance.now();
  try {
    const calls = [['torrent_get', { ids: 'recently_active', fields: POLL_FIELDS }], ['session_stats', {}]];
    if (pollCount % 5 === 0) calls.push(['session_get', {}]);
    pollCount++;
    const [tg, stats, values] = await rpc.batch(calls);
    const t1 = performance.now();
    if (!(tg instanceof Error)) {
      // A torrent not seen yet gets all its fields by itself.
      for (const t of tg.torrents) if (!torrents.has(t.id)) refreshSoon(t.id);
      merge(tg.torrents.filter((t) => torrents.has(t.id)));
      for (const id of tg.removed || []) torrents.delete(id);
      if (tg.torrents.length || (tg.removed || []).length) update();
      else list.render();
    }
    if (!(stats instanceof Error)) {
      session.stats = stats;
      hist.push(stats.download_speed, stats.upload_speed);
    }
    if (values && !(values instanceof Error)) session.values = values;
    statusbar();
    drawSpeed($('global-graph'), hist, false);
    if (details.open) {
      details.sample(torrents.get(details.id));
      await details.refresh();
    }
    const t2 = performance.now();
    perf.polls.push({ rows: tg instanceof Error ? 0 : tg.torrents.length, fetchMs: Math.round(t1 - t0), totalMs: Math.round(t2 - t0) });
    if (perf.polls.length > 50) perf.polls.shift();
  } catch (e) {
    if (e.name === 'AuthError') { polling = false; authLost(); return; }
    console.warn('poll failed', e);
  }
  polling = false;
  schedulePoll();
}

function schedulePoll(ms = POLL_MS) {
  if (pollTimer) clearTimeout(pollTimer);
  if (started && !document.hidden) pollTimer = setTimeout(poll, ms);
}

function stopPolling() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = 0;
}

// --- events ----------------------------------------------------------------------------------

function notify(title, body) {
  toast(title + ': ' + body, title !== 'Download complete');
  if ('Notification' in window && Notification.permission === 'granted') {
    try { new Notification(title, { body, icon: '/icon.svg', tag: 'spate-' + title + body }); } catch { /* some browsers allow them only from a service worker */ }
  }
}

// Events come in bursts (10,000 adds from a script are 10,000 events): the torrents they
// name are fetched together, at most one request in flight, a quarter second after the
// first; the list is redrawn at most every 100 ms.
const pending = new Set();
let flushTimer = 0;
let flushing = false;
let updateTimer = 0;

function refreshSoon(id) {
  pending.add(id);
  if (!flushTimer) flushTimer = setTimeout(flushPending, 250);
}

async function flushPending() {
  flushTimer = 0;
  if (flushing) { flushTimer = setTimeout(flushPending, 250); return; }
  const ids = [...pending];
  pending.clear();
  flushing = true;
  try {
    if (ids.length > 1000) await fullLoad();
    else await refreshIds(ids);
  } finally {
    flushing = false;
  }
}

function updateSoon() {
  if (!updateTimer) updateTimer = setTimeout(() => { updateTimer = 0; update(); }, 100);
}

function onEvent(name, ev) {
  switch (name) {
    case 'removed':
      torrents.delete(ev.id);
      pending.delete(ev.id);
      if (details.id === ev.id) details.close();
      updateSoon();
      break;
    case 'completed':
      notify('Download complete', ev.name);
      refreshSoon(ev.id);
      break;
    case 'error':
      notify('Torrent error', ev.name + ': ' + ev.error);
      refreshSoon(ev.id);
      break;
    case 'lagged':
      pending.clear();
      fullLoad();
      break;
    default:
      if (ev.id !== undefined) refreshSoon(ev.id);
  }
}

// --- the view ----------------------------------------------------------------------------------

function matches(t, skip) {
  if (skip !== 'status') {
    const f = STATUS_FILTERS.find((s) => s[0] === filter.status);
    if (f && !f[2](t)) return false;
  }
  if (skip !== 'label' && filter.label !== null) {
    const labels = t.labels || [];
    if (filter.label === '' ? labels.length : !labels.includes(filter.label)) return false;
  }
  if (skip !== 'tracker' && filter.tracker !== null) {
    if (!(t.trackers || []).some((tr) => trackerHost(tr.announce) === filter.tracker)) return false;
  }
  if (filter.text) {
    const q = filter.text.toLowerCase();
    if (!(t.name || '').toLowerCase().includes(q) && !(t.hash_string || '').startsWith(q)) return false;
  }
  return true;
}

function update() {
  const t0 = performance.now();
  const all = [...torrents.values()];
  const shown = list.sort(all.filter((t) => matches(t)));
  list.setRows(shown.map((t) => t.id), torrents);
  for (const id of [...list.selected]) if (!torrents.has(id)) list.selected.delete(id);
  $('list-empty').hidden = torrents.size > 0;
  $('sb-count').textContent = shown.length === all.length ? `${all.length} torrents` : `${shown.length} of ${all.length} torrents`;
  sidebar(all);
  updateButtons();
  perf.renders.push(Math.round(performance.now() - t0));
  if (perf.renders.length > 50) perf.renders.shift();
}

function sidebar(all) {
  const status = STATUS_FILTERS.map(([k, label, f]) => [k, label, all.filter((t) => matches(t, 'status') && f(t)).length]);
  const labels = new Map();
  const trackers = new Map();
  let unlabelled = 0;
  for (const t of all) {
    const ls = t.labels || [];
    if (!ls.length) unlabelled++;
    for (const l of ls) labels.set(l, (labels.get(l) || 0) + 1);
    const hosts = new Set((t.trackers || []).map((tr) => trackerHost(tr.announce)));
    for (const h of hosts) trackers.set(h, (trackers.get(h) || 0) + 1);
  }
  const labelList = [[null, 'All', all.length], ['', 'No label', unlabelled], ...[...labels].sort().map(([l, n]) => [l, l, n])];
  const trackerList = [[null, 'All', all.length], ...[...trackers].sort().map(([h, n]) => [h, h, n])];
  const sig = JSON.stringify([status, labelList, trackerList, filter.status, filter.label, filter.tracker]);
  if (sig === sidebarSig) return;
  sidebarSig = sig;
  const fill = (ul, items, cur, set) => {
    clear(ul);
    for (const [k, label, n] of items) {
      const b = el('button', { type: 'button', 'aria-pressed': String(cur === k), dataset: { filter: k === null ? '*' : k } },
        el('span', {}, label), el('span', { className: 'count' }, String(n)));
      b.addEventListener('click', () => { set(k); update(); closeDrawer(); });
      ul.append(el('li', {}, b));
    }
  };
  fill($('status-filters'), status, filter.status, (k) => { filter.status = k; });
  fill($('label-filters'), labelList, filter.label, (k) => { filter.label = k; });
  fill($('tracker-filters'), trackerList, filter.tracker, (k) => { filter.tracker = k; });
  const dl = $('label-list');
  clear(dl);
  for (const l of labels.keys()) dl.append(el('option', { value: l }));
}

function statusbar() {
  const s = session.stats;
  const v = session.values;
  $('sb-down').textContent = '↓ ' + (fmtRate(s.download_speed) || '0 B/s');
  $('sb-up').textContent = '↑ ' + (fmtRate(s.upload_speed) || '0 B/s');
  const lim = (on, kb) => (on ? kb + ' kB/s' : '∞');
  $('sb-limits').textContent = v.alt_speed_enabled
    ? `🐢 ↓ ${v.alt_speed_down} kB/s ↑ ${v.alt_speed_up} kB/s`
    : `limits ↓ ${lim(v.speed_limit_down_enabled, v.speed_limit_down)} ↑ ${lim(v.speed_limit_up_enabled, v.speed_limit_up)}`;
  $('sb-free').textContent = v.download_dir_free_space >= 0 ? 'Free: ' + fmtBytes(v.download_dir_free_space) : '';
  // Port mapping on the gateway (null when off): the ports forwarded, or why not.
  const pm = v.spate_port_mapping;
  const pmEl = $('sb-portmap');
  pmEl.textContent = !pm ? ''
    : pm.state === 'mapped' ? `Forwarded (${pm.protocol}): ${pm.mappings.map((m) => `${m.transport.toUpperCase()} ${pm.external || '?'}:${m.external}`).join(', ')}`
    : pm.state === 'failed' ? 'Port mapping failed' : '';
  pmEl.title = (pm && pm.error) || 'Ports forwarded by the gateway (UPnP, NAT-PMP, PCP)';
  const c = s.current_stats;
  $('sb-totals').textContent = c ? `This session: ↓ ${fmtBytes(c.downloaded_bytes)} ↑ ${fmtBytes(c.uploaded_bytes)}` : '';
  const turtle = $('btn-turtle');
  turtle.setAttribute('aria-pressed', String(!!v.alt_speed_enabled));
  turtle.title = (v.alt_speed_enabled ? 'Alternative speed limits are on' : 'Alternative speed limits are off') + ' (T)';
}

function updateButtons() {
  const none = list.selected.size === 0;
  for (const b of document.querySelectorAll('.actions button')) b.disabled = none;
}

// --- actions -------------------------------------------------------------------------------------

const METHOD = {
  start: 'torrent_start', stop: 'torrent_stop', verify: 'torrent_verify', reannounce: 'torrent_reannounce',
  'queue-top': 'queue_move_top', 'queue-up': 'queue_move_up', 'queue-down': 'queue_move_down', 'queue-bottom': 'queue_move_bottom',
};

async function act(name) {
  const ids = [...list.selected];
  if (!ids.length) return;
  if (name === 'remove') return askRemove(ids);
  if (name === 'label') return askLabel(ids);
  await guarded(() => rpc.call(METHOD[name], { ids }), name);
  if (name === 'reannounce') toast('Announcing ' + ids.length + ' torrent(s).');
  await refreshIds(name.startsWith('queue') ? [...torrents.keys()] : ids);
}

function askRemove(ids) {
  const dlg = $('dlg-remove');
  const names = ids.slice(0, 3).map((id) => torrents.get(id)?.name || '#' + id);
  $('remove-what').textContent = ids.length === 1 ? `Remove “${names[0]}”?` : `Remove ${ids.length} torrents (${names.join(', ')}${ids.length > 3 ? ', …' : ''})?`;
  const box = $('remove-data');
  box.checked = false;
  const say = () => {
    $('remove-consequence').textContent = box.checked
      ? 'The downloaded files will be deleted from disk too. This cannot be undone.'
      : 'The downloaded files stay on disk; only the torrent leaves the list.';
    $('remove-ok').textContent = box.checked ? 'Remove and delete data' : 'Remove';
  };
  box.onchange = say;
  say();
  dlg.returnValue = '';
  dlg.onclose = async () => {
    if (dlg.returnValue !== 'ok') return;
    const del = box.checked;
    await guarded(() => rpc.call('torrent_remove', { ids, delete_local_data: del }), 'Remove');
    for (const id of ids) torrents.delete(id);
    if (ids.includes(details.id)) details.close();
    list.selected.clear();
    update();
    toast(`Removed ${ids.length} torrent(s)` + (del ? ' and their data.' : '.'));
  };
  dlg.showModal();
}

function askLabel(ids) {
  const dlg = $('dlg-label');
  const first = torrents.get(ids[0]);
  $('label-input').value = (first?.labels || [])[0] || '';
  dlg.returnValue = '';
  dlg.onclose = async () => {
    if (dlg.returnValue !== 'ok') return;
    const l = $('label-input').value.trim();
    if (l.includes(',')) { toast('A label cannot contain a comma.', true); return; }
    await guarded(() => rpc.call('torrent_set', { ids, labels: l ? [l] : [] }), 'Label');
    refreshIds(ids);
  };
  dlg.showModal();
  $('label-input').select();
}

async function toggleTurtle() {
  const on = !session.values.alt_speed_enabled;
  await guarded(() => rpc.call('session_set', { alt_speed_enabled: on }), 'Alternative limits');
  await guarded(refreshSession);
  toast(on ? '🐢 Alternative speed limits on.' : 'Alternative speed limits off.');
}

function openDetails(id) {
  if (id === null || id === undefined) return;
  details.show(id);
}

// --- theme, drawer, keyboard, drag and drop ---------------------------------------------------------

function applyTheme() {
  const t = localStorage.getItem('spate-theme');
  if (t) document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

function toggleTheme() {
  const cur = document.documentElement.dataset.theme || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  localStorage.setItem('spate-theme', cur === 'dark' ? 'light' : 'dark');
  applyTheme();
  drawSpeed($('global-graph'), hist, false);
}

function closeDrawer() {
  $('sidebar').classList.remove('open');
  $('btn-menu').setAttribute('aria-expanded', 'false');
}

const SHORTCUTS = [
  ['A', 'Add torrents', () => adder.open()],
  ['/', 'Filter by name', () => $('filter-text').focus()],
  ['S', 'Start the selected torrents', () => act('start')],
  ['P', 'Stop (pause) the selected torrents', () => act('stop')],
  ['Delete', 'Remove the selected torrents (asks first)', () => act('remove')],
  ['V', 'Verify the selected torrents', () => act('verify')],
  ['R', 'Re-announce the selected torrents', () => act('reannounce')],
  ['L', 'Set the label of the selected torrents', () => act('label')],
  ['Shift+Home / Shift+End', 'Move to the top / bottom of the queue', null],
  ['Shift+PageUp / Shift+PageDown', 'Move up / down in the queue', null],
  ['I or Enter', 'Details of the focused torrent', () => openDetails(list.focusId ?? [...list.selected][0])],
  ['↑ ↓ PageUp PageDown Home End', 'Move in the list (Shift extends the selection)', null],
  ['Space', 'Select or unselect the focused torrent', null],
  ['Ctrl+A', 'Select all shown torrents', null],
  ['Esc', 'Close the details, or clear the selection', null],
  ['T', 'Alternative speed limits on / off', () => toggleTurtle()],
  ['D', 'Dark / light theme', () => toggleTheme()],
  [',', 'Settings', () => settings.open()],
  ['?', 'This help', () => $('dlg-help').showModal()],
];

function buildHelp() {
  const table = $('help-keys');
  for (const [keys, what] of SHORTCUTS) {
    const k = el('td');
    keys.split(' / ').forEach((combo, i) => {
      if (i) k.append(' / ');
      combo.split(' or ').forEach((c, j) => { if (j) k.append(' or '); k.append(el('kbd', {}, c)); });
    });
    table.append(el('tr', {}, k, el('td', {}, what)));
  }
}

function onKey(e) {
  if (!started || document.querySelector('dialog[open]')) return;
  const tag = e.target.tagName;
  if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') {
    if (e.key === 'Escape' && e.target.id === 'filter-text') { e.target.blur(); $('list').focus(); }
    return;
  }
  if (e.altKey) return;
  const k = e.key;
  if (e.shiftKey && ['Home', 'End', 'PageUp', 'PageDown'].includes(k)) {
    e.preventDefault();
    act({ Home: 'queue-top', End: 'queue-bottom', PageUp: 'queue-up', PageDown: 'queue-down' }[k]);
    return;
  }
  if ((e.ctrlKey || e.metaKey) && k.toLowerCase() === 'a') { e.preventDefault(); list.selectAll(); return; }
  if (e.ctrlKey || e.metaKey) return;
  if (k === 'Escape') {
    if (details.open) details.close();
    else if ($('sidebar').classList.contains('open')) closeDrawer();
    else { list.select([]); }
    return;
  }
  const map = { a: 0, '/': 1, s: 2, p: 3, Delete: 4, v: 5, r: 6, l: 7, i: 10, Enter: 10, t: 15, d: 16, ',': 17, '?': 18 };
  const i = map[k.length === 1 ? k.toLowerCase() : k] ?? map[k];
  if (i === undefined) return;
  if (k === 'Enter' && e.target.tagName === 'BUTTON') return;
  e.preventDefault();
  SHORTCUTS[i][2]();
}

function setupDrop() {
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  document.addEventListener('dragenter', (e) => { if (!hasFiles(e)) return; depth++; $('drop-overlay').hidden = !started; e.preventDefault(); });
  document.addEventListener('dragover', (e) => { if (hasFiles(e)) { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; } });
  document.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) $('drop-overlay').hidden = true; });
  document.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    $('drop-overlay').hidden = true;
    if (!started) return;
    const files = [...e.dataTransfer.files].filter((f) => /\.torrent$/i.test(f.name) || f.type === 'application/x-bittorrent');
    if (files.length) adder.addFiles(files);
    else toast('Only .torrent files can be dropped here.', true);
  });
  document.addEventListener('paste', (e) => {
    if (!started || document.querySelector('dialog[open]') || ['INPUT', 'TEXTAREA'].includes(e.target.tagName)) return;
    const text = (e.clipboardData?.getData('text') || '').trim();
    if (/^(magnet:|https?:\/\/)/i.test(text)) adder.open({ url: text });
  });
}

/** `/#add=magnet:...` (what the browser opens as the magnet: handler) opens the add dialog. */
function handleHash() {
  const h = location.hash;
  // Kept until the app runs (a login may come first); start() calls this again.
  if (!h.startsWith('#add=') || !started) return;
  let url = h.slice(5);
  try { url = decodeURIComponent(url); } catch { /* as is */ }
  history.replaceState(null, '', location.pathname);
  adder.open({ url });
}

// --- wiring -----------------------------------------------------------------------------------------

function init() {
  applyTheme();
  list = new VirtualList($('list'), $('list-spacer'), $('list-head'), {
    onSelect: (ids, focus) => {
      updateButtons();
      if (details.open && focus !== null && focus !== details.id && ids.length === 1) details.show(focus);
    },
    onOpen: openDetails,
    onSort: () => update(),
  });
  const saved = JSON.parse(localStorage.getItem('spate-sort') || 'null');
  if (saved) list.sortBy(saved[0], saved[1]);
  list.onSort = (k, d) => { localStorage.setItem('spate-sort', JSON.stringify([k, d])); update(); };
  details = new Details(rpc, (ids) => refreshIds(ids));
  adder = new AddDialog(rpc, () => ({ downloadDir: session.values.download_dir, startAdded: session.values.start_added_torrents !== false }), (id) => refreshIds([id]));
  settings = new Settings(rpc, { refreshSession: () => guarded(refreshSession) });
  buildHelp();
  $('login-form').addEventListener('submit', onLogin);
  $('btn-add').addEventListener('click', () => adder.open());
  $('btn-turtle').addEventListener('click', toggleTurtle);
  $('btn-theme').addEventListener('click', toggleTheme);
  $('btn-settings').addEventListener('click', () => guarded(() => settings.open()));
  $('btn-help').addEventListener('click', () => $('dlg-help').showModal());
  $('btn-logout').addEventListener('click', async () => {
    if (!rpc.basic) {
      await fetch('/api/v2/auth/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Requested-With': 'XMLHttpRequest' } }).catch(() => {});
    }
    rpc.basic = null;
    $('btn-logout').hidden = true;
    sessionStorage.removeItem('spate-login');
    authLost();
  });
  $('details-close').addEventListener('click', () => { details.close(); $('list').focus(); });
  $('btn-menu').addEventListener('click', () => {
    const open = $('sidebar').classList.toggle('open');
    $('btn-menu').setAttribute('aria-expanded', String(open));
  });
  for (const b of document.querySelectorAll('.actions button[data-act]')) b.addEventListener('click', () => act(b.dataset.act));
  let typing = 0;
  $('filter-text').addEventListener('input', (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => { filter.text = e.target.value.trim(); update(); }, 120);
  });
  document.addEventListener('keydown', onKey);
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) stopPolling();
    else if (started) schedulePoll(0);
  });
  window.addEventListener('hashchange', handleHash);
  setupDrop();
  start();
}

init();
