// The settings page: every key session-set changes, grouped; only the changed ones are
// sent. Also this browser's own choices (theme, notifications, magnet handler).

import { $, el, clear, toast } from './util.js';

// [key, label, kind, extra]. Kinds: text, num, bool, time (minutes after midnight), days
// (bit mask), select.
const GROUPS = [
  ['Folders', [
    ['download_dir', 'Download folder', 'text'],
    ['incomplete_dir_enabled', 'Keep incomplete downloads in another folder', 'bool'],
    ['incomplete_dir', 'Incomplete folder', 'text'],
    ['rename_partial_files', 'Add .part to incomplete files', 'bool'],
    ['start_added_torrents', 'Start added torrents', 'bool'],
  ]],
  ['Speed limits (kB/s)', [
    ['speed_limit_down_enabled', 'Limit download', 'bool'],
    ['speed_limit_down', 'Download limit', 'num'],
    ['speed_limit_up_enabled', 'Limit upload', 'bool'],
    ['speed_limit_up', 'Upload limit', 'num'],
  ]],
  ['Alternative limits 🐢 (kB/s)', [
    ['alt_speed_enabled', 'Use the alternative limits now', 'bool'],
    ['alt_speed_down', 'Alternative download limit', 'num'],
    ['alt_speed_up', 'Alternative upload limit', 'num'],
    ['alt_speed_time_enabled', 'On a schedule', 'bool'],
    ['alt_speed_time_begin', 'From', 'time'],
    ['alt_speed_time_end', 'To', 'time'],
    ['alt_speed_time_day', 'On', 'days'],
  ]],
  ['Queue', [
    ['download_queue_enabled', 'Limit active downloads', 'bool'],
    ['download_queue_size', 'Active downloads at most', 'num'],
    ['seed_queue_enabled', 'Limit active seeds', 'bool'],
    ['seed_queue_size', 'Active seeds at most', 'num'],
    ['queue_stalled_enabled', 'Stalled torrents leave the queue', 'bool'],
    ['queue_stalled_minutes', 'Stalled after (minutes)', 'num'],
  ]],
  ['Seeding limits', [
    ['seed_ratio_limited', 'Stop seeding at a ratio', 'bool'],
    ['seed_ratio_limit', 'Ratio', 'num', { step: '0.01' }],
    ['idle_seeding_limit_enabled', 'Stop seeding when idle', 'bool'],
    ['idle_seeding_limit', 'Idle minutes', 'num'],
  ]],
  ['Peers', [
    ['peer_limit_global', 'Peers at most, overall', 'num'],
    ['peer_limit_per_torrent', 'Peers at most, per torrent', 'num'],
    ['dht_enabled', 'DHT', 'bool'],
    ['pex_enabled', 'Peer exchange (PEX)', 'bool'],
    ['lpd_enabled', 'Local peer discovery', 'bool'],
    ['utp_enabled', 'µTP', 'bool'],
    ['encryption', 'Encryption', 'select', { options: ['tolerated', 'preferred', 'required'] }],
  ]],
  ['Network', [
    ['peer_port', 'Peer port (set in the daemon\'s configuration)', 'num', { readOnly: true }],
  ]],
  ['Scripts', [
    ['script_torrent_added_enabled', 'Run a script when a torrent is added', 'bool'],
    ['script_torrent_added_filename', 'Script', 'text'],
    ['script_torrent_done_enabled', 'Run a script when a torrent completes', 'bool'],
    ['script_torrent_done_filename', 'Script', 'text'],
    ['script_torrent_done_seeding_enabled', 'Run a script when seeding ends', 'bool'],
    ['script_torrent_done_seeding_filename', 'Script', 'text'],
  ]],
];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const KEYS = GROUPS.flatMap(([, items]) => items.map((i) => i[0]));

const hhmm = (m) => String(Math.floor(m / 60)).padStart(2, '0') + ':' + String(m % 60).padStart(2, '0');

export class Settings {
  constructor(rpc, app) {
    this.rpc = rpc;
    this.app = app;
    this.dlg = $('dlg-settings');
    this.inputs = new Map();
    this.values = {};
    this.build();
    $('settings-form').addEventListener('submit', (e) => {
      if (e.submitter && e.submitter.value === 'cancel') return;
      e.preventDefault();
      this.save();
    });
  }

  build() {
    const body = $('settings-body');
    clear(body);
    for (const [title, items] of GROUPS) {
      const fs = el('fieldset', {}, el('legend', {}, title));
      for (const [key, label, kind, extra = {}] of items) {
        const id = 'set-' + key;
        let input;
        if (kind === 'bool') {
          input = el('input', { type: 'checkbox', id, name: key });
          fs.append(el('label', { className: 'check' }, input, label));
        } else if (kind === 'days') {
          const boxes = DAYS.map((d) => el('input', { type: 'checkbox', 'aria-label': d }));
          input = { days: boxes };
          fs.append(el('div', { className: 'days', role: 'group', 'aria-label': label }, ...boxes.map((b, i) => el('label', { className: 'check' }, b, DAYS[i]))));
        } else if (kind === 'select') {
          input = el('select', { id, name: key }, ...extra.options.map((o) => el('option', { value: o }, o)));
          fs.append(el('label', {}, label, input));
        } else {
          input = el('input', { type: kind === 'num' ? 'number' : kind === 'time' ? 'time' : 'text', id, name: key, min: kind === 'num' ? '0' : undefined, step: extra.step, readOnly: !!extra.readOnly, spellcheck: false });
          fs.append(el('label', {}, label, input));
        }
        input.kind = kind;
        this.inputs.set(key, input);
      }
      body.append(fs);
    }
    const local = el('fieldset', {}, el('legend', {}, 'This browser'));
    const notify = el('button', { type: 'button', id: 'set-notify' }, 'Allow notifications');
    notify.addEventListener('click', async () => {
      if (!('Notification' in window)) { toast('This browser has no notifications.', true); return; }
      const p = await Notification.requestPermission();
      toast(p === 'granted' ? 'Notifications on: you will be told when a torrent completes or fails.' : 'Notifications are ' + p + '.');
      this.updateLocal();
    });
    const magnet = el('button', { type: 'button', id: 'set-magnet' }, 'Open magnet: links with spate');
    magnet.addEventListener('click', () => {
      try {
        navigator.registerProtocolHandler('magnet', location.origin + '/#add=%s');
        toast('Asked the browser to open magnet: links here.');
      } catch (e) {
        toast('The browser refused: ' + e.message + ' (it needs https or localhost).', true);
      }
    });
    this.notifyState = el('span', { className: 'muted' });
    local.append(notify, this.notifyState, magnet);
    body.append(local);
  }

  updateLocal() {
    this.notifyState.textContent = 'Notification' in window ? 'Notifications: ' + Notification.permission : 'No notifications in this browser';
  }

  async open() {
    $('settings-error').textContent = '';
    this.updateLocal();
    try {
      this.values = await this.rpc.call('session_get', { fields: KEYS });
    } catch (e) {
      if (e.name === 'AuthError') throw e;
      toast('Could not read the settings: ' + e.message, true);
      return;
    }
    for (const [key, input] of this.inputs) {
      const v = this.values[key];
      if (input.kind === 'bool') input.checked = !!v;
      else if (input.kind === 'days') input.days.forEach((b, i) => { b.checked = !!(v & (1 << i)); });
      else if (input.kind === 'time') input.value = hhmm(v || 0);
      else input.value = v === undefined || v === null ? '' : String(v);
    }
    this.dlg.showModal();
  }

  read(key, input) {
    switch (input.kind) {
      case 'bool': return input.checked;
      case 'days': return input.days.reduce((m, b, i) => m | (b.checked ? 1 << i : 0), 0);
      case 'time': { const [h, m] = (input.value || '00:00').split(':').map(Number); return h * 60 + m; }
      case 'num': return key === 'seed_ratio_limit' ? parseFloat(input.value) : parseInt(input.value, 10);
      default: return input.value;
    }
  }

  async save() {
    const changed = {};
    for (const [key, input] of this.inputs) {
      if (input.readOnly) continue;
      const v = this.read(key, input);
      if (typeof v === 'number' && !Number.isFinite(v)) { $('settings-error').textContent = `"${key}" needs a number.`; return; }
      if (v !== this.values[key]) changed[key] = v;
    }
    if (Object.keys(changed).length === 0) { this.dlg.close(); return; }
    try {
      await this.rpc.call('session_set', changed);
      toast('Settings saved.');
      this.dlg.close();
      this.app.refreshSession();
    } catch (e) {
      if (e.name === 'AuthError') throw e;
      $('settings-error').textContent = 'Not saved: ' + e.message;
    }
  }
}
