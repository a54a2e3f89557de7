// Adding torrents: .torrent files (picker, drag and drop anywhere, several in a row) whose
// files are read in the browser (bencode) and shown as a tree to choose from, magnet
// links and URLs (pasted, or handed over by the browser as the magnet: handler).

import { $, el, clear, fmtBytes, toBase64, toast } from './util.js';
import { torrentFiles } from './bencode.js';

export class AddDialog {
  constructor(rpc, getDefaults, onAdded) {
    this.rpc = rpc;
    this.getDefaults = getDefaults;
    this.onAdded = onAdded;
    this.queue = []; // { file, bytes, meta } still to add
    this.cur = null;
    this.dlg = $('dlg-add');
    $('add-file').addEventListener('change', (e) => { this.addFiles([...e.target.files]); e.target.value = ''; });
    $('add-url').addEventListener('input', () => { if ($('add-url').value.trim()) { this.queue = []; this.cur = null; this.showMeta(); } });
    $('add-all').addEventListener('click', () => this.checkAll(true));
    $('add-none').addEventListener('click', () => this.checkAll(false));
    $('add-skip').addEventListener('click', () => this.next());
    $('add-form').addEventListener('submit', (e) => {
      if (e.submitter && e.submitter.value === 'cancel') return;
      e.preventDefault();
      this.submit();
    });
    this.dlg.addEventListener('close', () => { this.queue = []; this.cur = null; });
  }

  open({ url = '', files = [] } = {}) {
    const d = this.getDefaults();
    $('add-dir').value = d.downloadDir || '';
    $('add-paused').checked = !d.startAdded;
    $('add-label').value = '';
    $('add-url').value = url;
    $('add-error').textContent = '';
    this.queue = [];
    this.cur = null;
    this.added = false;
    this.showMeta();
    if (!this.dlg.open) this.dlg.showModal();
    if (files.length) this.addFiles(files);
    else $('add-url').focus();
  }

  async addFiles(files) {
    if (!this.dlg.open) { this.open({ files }); return; }
    $('add-url').value = '';
    for (const file of files) {
      try {
        const bytes = new Uint8Array(await file.arrayBuffer());
        this.queue.push({ file, bytes, meta: torrentFiles(bytes) });
      } catch (e) {
        toast(`${file.name}: not a readable .torrent file (${e.message})`, true);
      }
    }
    if (!this.cur) this.next();
    else this.showMeta();
  }

  next() {
    this.cur = this.queue.shift() || null;
    if (!this.cur && !$('add-url').value.trim()) {
      if (this.dlg.open && this.added) this.dlg.close();
    }
    this.showMeta();
  }

  showMeta() {
    const c = this.cur;
    $('add-meta').hidden = !c;
    $('add-skip').hidden = !c || this.queue.length === 0;
    $('add-queue').textContent = this.queue.length ? `(${this.queue.length} more after this one)` : '';
    $('add-title').textContent = c ? 'Add torrent' : 'Add torrents';
    if (!c) return;
    $('add-name').textContent = c.meta.name;
    $('add-size').textContent = fmtBytes(c.meta.total) + ', ' + c.meta.files.filter((f) => !f.pad).length + ' file(s)';
    this.buildTree(c.meta.files);
  }

  buildTree(files) {
    const box = $('add-tree');
    clear(box);
    const root = { children: new Map(), depth: -1 };
    files.forEach((f, i) => {
      if (f.pad) return;
      let n = root;
      f.path.forEach((p, j) => {
        if (!n.children.has(p)) n.children.set(p, { name: p, children: new Map(), depth: j, length: 0 });
        n = n.children.get(p);
        n.length += f.length;
      });
      n.index = i;
    });
    this.nodes = [];
    const indices = (n) => (n.index !== undefined ? [n.index] : [...n.children.values()].flatMap(indices));
    const add = (n, parent) => {
      const cb = el('input', { type: 'checkbox', checked: true, 'aria-label': 'Download ' + n.name });
      const sel = el('select', { 'aria-label': 'Priority of ' + n.name },
        el('option', { value: '' , disabled: true, hidden: true }, 'Mixed'),
        el('option', { value: 'low' }, 'Low'), el('option', { value: 'normal', selected: true }, 'Normal'), el('option', { value: 'high' }, 'High'));
      const label = el('label', {}, cb, el('span', {}, (n.index === undefined ? '📁 ' : '') + n.name));
      label.style.paddingLeft = n.depth * 18 + 'px';
      box.append(el('div', { className: 'node' + (n.index === undefined ? ' dir' : ''), role: 'treeitem', dataset: { index: n.index ?? '' } }, label, el('span', { className: 'num' }, fmtBytes(n.length)), sel));
      n.cb = cb; n.sel = sel; n.parent = parent;
      this.nodes.push(n);
      cb.addEventListener('change', () => {
        this.setDown(n, (m) => { m.cb.checked = cb.checked; m.cb.indeterminate = false; });
        this.fixUp(n.parent);
      });
      sel.addEventListener('change', () => {
        this.setDown(n, (m) => { m.sel.value = sel.value; });
        this.fixUp(n.parent);
      });
      n.indices = indices(n);
      for (const c of n.children.values()) add(c, n);
    };
    for (const c of root.children.values()) add(c, null);
  }

  setDown(n, f) { f(n); for (const c of n.children.values()) this.setDown(c, f); }

  fixUp(n) {
    while (n) {
      const kids = [...n.children.values()];
      const all = kids.every((c) => c.cb.checked && !c.cb.indeterminate);
      const none = kids.every((c) => !c.cb.checked && !c.cb.indeterminate);
      n.cb.checked = all;
      n.cb.indeterminate = !all && !none;
      const ps = new Set(kids.map((c) => c.sel.value));
      n.sel.value = ps.size === 1 ? [...ps][0] : '';
      n = n.parent;
    }
  }

  checkAll(on) {
    for (const n of this.nodes || []) { n.cb.checked = on; n.cb.indeterminate = false; }
  }

  options() {
    const opts = { paused: $('add-paused').checked };
    const dir = $('add-dir').value.trim();
    if (dir) opts.download_dir = dir;
    const label = $('add-label').value.trim();
    if (label) opts.labels = [label];
    return opts;
  }

  async submit() {
    $('add-error').textContent = '';
    const url = $('add-url').value.trim();
    const params = this.options();
    if (this.cur) {
      params.metainfo = toBase64(this.cur.bytes);
      const unwanted = [];
      const high = [];
      const low = [];
      for (const n of this.nodes) {
        if (n.index === undefined) continue;
        if (!n.cb.checked) unwanted.push(n.index);
        if (n.sel.value === 'high') high.push(n.index);
        if (n.sel.value === 'low') low.push(n.index);
      }
      if (unwanted.length) params.files_unwanted = unwanted;
      if (high.length) params.priority_high = high;
      if (low.length) params.priority_low = low;
    } else if (url) {
      params.filename = url;
    } else {
      $('add-error').textContent = 'Choose a .torrent file, drop one on the page, or paste a magnet link or URL.';
      return;
    }
    $('add-ok').disabled = true;
    try {
      const r = await this.rpc.call('torrent_add', params);
      const dup = r.torrent_duplicate;
      const t = r.torrent_added || dup;
      toast(dup ? `Already there: ${t.name}` : `Added: ${t.name}`);
      this.added = true;
      this.onAdded(t.id);
      $('add-url').value = '';
      if (this.cur) this.next();
      else this.dlg.close();
    } catch (e) {
      if (e.name === 'AuthError') throw e;
      $('add-error').textContent = 'Not added: ' + e.message;
    } finally {
      $('add-ok').disabled = false;
    }
  }
}
