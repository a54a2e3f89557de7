// A bencode decoder, enough to show a .torrent's files before it is added. Byte strings
// stay Uint8Array (pieces, hashes); `text()` reads them as UTF-8.

export class BencodeError extends Error {}

const MAX_DEPTH = 64;

/** Decodes one value that spans the whole buffer. Dictionaries become Maps keyed by the
 * key's text (byte order is kept). */
export function decode(buf) {
  const u = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let i = 0;
  const fail = (what) => { throw new BencodeError(what + ' at byte ' + i); };
  const int = (end) => {
    const s = new TextDecoder().decode(u.subarray(i, end));
    if (!/^(0|-?[1-9][0-9]*)$/.test(s)) fail('bad integer');
    i = end + 1;
    return Number(s);
  };
  const value = (depth) => {
    if (depth > MAX_DEPTH) fail('nested too deep');
    if (i >= u.length) fail('truncated');
    const c = u[i];
    if (c === 0x69) { // i
      i++;
      const end = u.indexOf(0x65, i);
      if (end < 0) fail('unterminated integer');
      return int(end);
    }
    if (c === 0x6c) { // l
      i++;
      const out = [];
      while (u[i] !== 0x65) { if (i >= u.length) fail('unterminated list'); out.push(value(depth + 1)); }
      i++;
      return out;
    }
    if (c === 0x64) { // d
      i++;
      const out = new Map();
      while (u[i] !== 0x65) {
        if (i >= u.length) fail('unterminated dictionary');
        const k = value(depth + 1);
        if (!(k instanceof Uint8Array)) fail('dictionary key is not a string');
        out.set(new TextDecoder().decode(k), value(depth + 1));
      }
      i++;
      return out;
    }
    if (c >= 0x30 && c <= 0x39) {
      const colon = u.indexOf(0x3a, i);
      if (colon < 0) fail('bad string length');
      const len = int(colon);
      if (len < 0 || i + len > u.length) fail('string past the end');
      const s = u.subarray(i, i + len);
      i += len;
      return s;
    }
    return fail('unexpected byte ' + c);
  };
  const v = value(0);
  if (i !== u.length) fail('trailing data');
  return v;
}

export function text(v) {
  return v instanceof Uint8Array ? new TextDecoder().decode(v) : '';
}

/** What the add dialog shows of a .torrent: its name, total size, and files in the
 * torrent's order (indices are what torrent-add's files_unwanted etc. name; pad files are
 * kept so that the numbering matches, and marked). */
export function torrentFiles(buf) {
  const root = decode(buf);
  if (!(root instanceof Map)) throw new BencodeError('not a dictionary');
  const info = root.get('info');
  if (!(info instanceof Map)) throw new BencodeError('no info dictionary');
  const name = text(info.get('name.utf-8') || info.get('name')) || 'unnamed';
  const files = [];
  const list = info.get('files');
  if (Array.isArray(list)) {
    for (const f of list) {
      if (!(f instanceof Map)) throw new BencodeError('bad file entry');
      const parts = (f.get('path.utf-8') || f.get('path') || []).map(text);
      const attr = text(f.get('attr'));
      const pad = attr.includes('p') || (parts.length > 0 && parts[parts.length - 1].startsWith('_____padding_file_'));
      files.push({ path: [name, ...parts], length: Number(f.get('length') || 0), pad });
    }
  } else if (info.has('length')) {
    files.push({ path: [name], length: Number(info.get('length')), pad: false });
  } else if (info.get('file tree') instanceof Map) {
    // v2-only: walk the tree ("" leaf holds the length).
    const walk = (m, prefix) => {
      for (const [k, v] of m) {
        if (!(v instanceof Map)) continue;
        if (v.has('')) files.push({ path: [...prefix, k], length: Number(v.get('').get('length') || 0), pad: false });
        else walk(v, [...prefix, k]);
      }
    };
    walk(info.get('file tree'), [name]);
  }
  const comment = text(root.get('comment'));
  return { name, files, total: files.reduce((a, f) => a + (f.pad ? 0 : f.length), 0), comment };
}
