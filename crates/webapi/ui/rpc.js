// The Transmission RPC (JSON-RPC 2.0 envelope, snake_case names, batches) with the
// X-Transmission-Session-Id dance, the event stream, and the login.
//
// Every request carries `X-Requested-With: XMLHttpRequest`: the server then answers a
// missing login with a bare 401 (no WWW-Authenticate), so the browser shows no password
// popup and the page shows its own login form instead.

export class AuthError extends Error {
  constructor(status) { super('authentication required (HTTP ' + status + ')'); this.name = 'AuthError'; this.status = status; }
}

export class RpcError extends Error {
  constructor(m) { super(m); this.name = 'RpcError'; }
}

const RPC_PATH = '/transmission/rpc';

export class Rpc {
  constructor() {
    this.sessionId = '';
    this.nextId = 1;
    /** `Basic ...` when the server has no cookie login and the user logged in here. */
    this.basic = null;
  }

  headers(extra = {}) {
    const h = { 'X-Requested-With': 'XMLHttpRequest', ...extra };
    if (this.basic) h.Authorization = this.basic;
    return h;
  }

  async post(body) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const resp = await fetch(RPC_PATH, {
        method: 'POST',
        credentials: 'same-origin',
        cache: 'no-store',
        headers: this.headers({ 'Content-Type': 'application/json', 'X-Transmission-Session-Id': this.sessionId }),
        body,
      });
      if (resp.status === 409) {
        this.sessionId = resp.headers.get('X-Transmission-Session-Id') || '';
        continue;
      }
      if (resp.status === 401 || resp.status === 403) throw new AuthError(resp.status);
      if (resp.status === 204) return null;
      if (!resp.ok) throw new RpcError('HTTP ' + resp.status + ': ' + (await resp.text()).slice(0, 200));
      return resp.json();
    }
    throw new RpcError('the server kept refusing the session id');
  }

  /** One method; resolves to its result object, rejects with RpcError on an error answer. */
  async call(method, params = {}) {
    const [r] = await this.batch([[method, params]]);
    if (r instanceof Error) throw r;
    return r;
  }

  /** Several methods in one request; resolves to their results in order (an Error for
   * each that failed). */
  async batch(calls) {
    const base = this.nextId;
    this.nextId += calls.length;
    const body = JSON.stringify(calls.map(([method, params], i) => ({ jsonrpc: '2.0', method, params, id: base + i })));
    const answer = await this.post(body);
    const byId = new Map((Array.isArray(answer) ? answer : [answer]).map((a) => [a && a.id, a]));
    return calls.map((_, i) => {
      const a = byId.get(base + i);
      if (!a) return new RpcError('no answer');
      if (a.error) return new RpcError(a.error.data?.errorString || a.error.message || 'error');
      return a.result;
    });
  }

  /** Reads `/spate/events` (Server-Sent Events) with fetch, so the same headers go along
   * as for the RPC; calls `onEvent(name, data)`; reconnects after a pause until `stop()`. */
  events(onEvent, onAuth) {
    let stopped = false;
    let ctrl = null;
    const run = async () => {
      while (!stopped) {
        ctrl = new AbortController();
        try {
          const resp = await fetch('/spate/events', { headers: this.headers({ Accept: 'text/event-stream' }), credentials: 'same-origin', signal: ctrl.signal, cache: 'no-store' });
          if (resp.status === 401 || resp.status === 403) { onAuth(); return; }
          if (!resp.ok || !resp.body) throw new Error('HTTP ' + resp.status);
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, '\n');
            let cut;
            while ((cut = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, cut);
              buf = buf.slice(cut + 2);
              let name = 'message';
              const data = [];
              for (const line of block.split('\n')) {
                if (line.startsWith('event:')) name = line.slice(6).trim();
                else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
              }
              if (data.length) {
                try { onEvent(name, JSON.parse(data.join('\n'))); } catch (e) { console.warn('bad event', e); }
              }
            }
          }
        } catch (e) {
          if (stopped) return;
        }
        await new Promise((r) => setTimeout(r, 5000));
      }
    };
    run();
    return { stop() { stopped = true; if (ctrl) ctrl.abort(); } };
  }
}

/** POSTs the login form to the qBittorrent-style endpoint. Resolves to 'ok', 'fail', or
 * 'absent' (the server has no such endpoint: Basic credentials are used instead). */
export async function login(username, password) {
  const resp = await fetch('/api/v2/auth/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-Requested-With': 'XMLHttpRequest', 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password }).toString(),
  });
  // 404/405: no such route; 401: a server whose guard does not know the route either.
  if (resp.status === 404 || resp.status === 405 || resp.status === 401) return 'absent';
  const text = (await resp.text()).trim();
  if (resp.ok && text === 'Ok.') return 'ok';
  return 'fail';
}

/** `Basic base64(user:pass)` of UTF-8 text. */
export function basicHeader(user, pass) {
  const bytes = new TextEncoder().encode(user + ':' + pass);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return 'Basic ' + btoa(s);
}
