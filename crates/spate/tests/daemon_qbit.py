# The PyPI client qbittorrent-api (what qbit_manage and many scripts use; Sonarr/Radarr call
# the same endpoints) driving spate's qBittorrent WebAPI, run by the test venv's python
# (SPATE_TEST_PYTHON). Used by tests/daemon_qbit.rs; every mode checks as it goes (a failed
# check raises, with what was seen) and prints one JSON object on stdout.
#
#   full PORT USER PASS OUT X_TORRENT X_HASH Y_MAGNET Y_HASH SECONDS
#       login (refused without/with wrong credentials), categories and tags, add X by file
#       upload into category tv (save path OUT/tv) and Y by magnet link into OUT/m, follow
#       sync/maindata deltas until both are complete, files/properties/trackers/pieceStates,
#       filePrio, stop/start, the Transmission RPC's view of the labels, /metrics before and
#       after, delete X with its files and Y without, logout
#   bypass PORT
#       no password configured: no login needed, and any login succeeds
import json
import sys
import time

import qbittorrentapi
import requests
from prometheus_client.parser import text_string_to_metric_families

SEEDING = ('uploading', 'stalledUP', 'queuedUP')


def check(cond, what, seen=None):
    if not cond:
        raise AssertionError(f'{what}; seen: {seen!r}')


def metrics(base, cookies=None):
    r = requests.get(f'{base}/metrics', cookies=cookies, timeout=20)
    check(r.status_code == 200, 'GET /metrics', r.status_code)
    check(r.headers['content-type'].startswith('text/plain; version=0.0.4'), 'metrics type',
          r.headers['content-type'])
    samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            key = s.name + ''.join(f'|{k}={v}' for k, v in sorted(s.labels.items()))
            samples[key] = s.value
    return samples


def full(port, user, password, out, x_torrent, x_hash, y_magnet, y_hash, seconds):
    base = f'http://127.0.0.1:{port}'
    res = {}

    # No credentials: refused (403, or a failed login when the client retries).
    anon = qbittorrentapi.Client(host='127.0.0.1', port=int(port),
                                 REQUESTS_ARGS={'timeout': 20})
    try:
        anon.app_version()
        raise AssertionError('app/version answered without a login')
    except (qbittorrentapi.Forbidden403Error, qbittorrentapi.LoginFailed) as e:
        res['anonymous'] = type(e).__name__
    r = requests.get(f'{base}/api/v2/app/version', timeout=20)
    check(r.status_code == 403, 'app/version without cookie', r.status_code)
    r = requests.get(f'{base}/metrics', timeout=20)
    check(r.status_code == 401, '/metrics without auth', r.status_code)
    bad = qbittorrentapi.Client(host='127.0.0.1', port=int(port), username=user,
                                password='wrong', REQUESTS_ARGS={'timeout': 20})
    try:
        bad.auth_log_in()
        raise AssertionError('a wrong password logged in')
    except qbittorrentapi.LoginFailed:
        res['wrong_password'] = 'LoginFailed'

    c = qbittorrentapi.Client(host='127.0.0.1', port=int(port), username=user,
                              password=password, REQUESTS_ARGS={'timeout': 20})
    c.auth_log_in()
    check(c.is_logged_in, 'is_logged_in after login')
    res['version'] = c.app_version()
    res['webapi'] = c.app_web_api_version()
    res['default_save_path'] = c.app_default_save_path()
    prefs = c.app_preferences()
    check('save_path' in prefs and 'queueing_enabled' in prefs, 'preferences', prefs)

    web = requests.Session()
    r = web.post(f'{base}/api/v2/auth/login', data={'username': user, 'password': password},
                 timeout=20)
    check(r.text == 'Ok.' and 'SID' in web.cookies, 'raw login', (r.text, web.cookies))
    before = metrics(base, web.cookies)
    check(before.get('spate_downloaded_bytes_total') == 0, 'downloaded before', before)

    c.torrents_create_category(name='tv', save_path=f'{out}/tv')
    cats = c.torrents_categories()
    check(cats['tv']['savePath'] == f'{out}/tv', 'categories', cats)
    c.torrents_create_tags(tags=['hd'])

    rid = 0
    state = {}
    stats = {'deltas': 0, 'partial': 0, 'full': 0}

    def sync():
        nonlocal rid
        d = c.sync_maindata(rid=rid)
        if d.get('full_update'):
            stats['full'] += 1
            state.clear()
        else:
            stats['deltas'] += 1
        for h, fields in (d.get('torrents') or {}).items():
            if h in state and len(fields) < len(state[h]):
                stats['partial'] += 1
            state.setdefault(h, {}).update(fields)
        for h in d.get('torrents_removed') or []:
            state.pop(h, None)
        rid = d['rid']
        return d

    first = sync()
    check(first.get('full_update') is True and 'server_state' in first, 'first maindata', first)

    with open(x_torrent, 'rb') as f:
        got = c.torrents_add(torrent_files={'x.torrent': f.read()}, category='tv',
                             tags=['hd', 'new'])
    check(got == 'Ok.', 'add by file', got)
    got = c.torrents_add(urls=y_magnet, save_path=f'{out}/m')
    check(got == 'Ok.', 'add by magnet', got)
    with open(x_torrent, 'rb') as f:
        got = c.torrents_add(torrent_files={'x.torrent': f.read()})
    check(got == 'Fails.', 'a duplicate add', got)

    end = time.monotonic() + float(seconds)
    seen_states = set()
    while True:
        sync()
        for h in (x_hash, y_hash):
            if h in state:
                seen_states.add(state[h].get('state'))
        if all(h in state and state[h].get('progress') == 1 and state[h].get('state') in SEEDING
               for h in (x_hash, y_hash)):
            break
        if time.monotonic() > end:
            raise AssertionError(f'not complete in time: {state}')
        time.sleep(0.5)
    res['states_seen'] = sorted(s for s in seen_states if s)
    check(stats['partial'] > 0, 'no partial torrent deltas', stats)

    # The deltas add up to what torrents/info says.
    info = {t['hash']: t for t in c.torrents_info()}
    for h in (x_hash, y_hash):
        for k in ('name', 'size', 'progress', 'category', 'tags', 'save_path', 'amount_left',
                  'total_size', 'magnet_uri', 'added_on'):
            check(state[h].get(k) == info[h][k], f'maindata {k} of {h}', (state[h], info[h]))
    x, y = info[x_hash], info[y_hash]
    check(x['category'] == 'tv' and x['save_path'] == f'{out}/tv', 'x category', x)
    check(set(x['tags'].split(', ')) == {'hd', 'new'}, 'x tags', x)
    check(y['save_path'] == f'{out}/m' and y['category'] == '', 'y', y)
    check([t['hash'] for t in c.torrents_info(category='tv')] == [x_hash], 'category filter')
    check([t['hash'] for t in c.torrents_info(tag='new')] == [x_hash], 'tag filter')
    check(len(c.torrents_info(status_filter='completed')) == 2, 'completed filter')
    check(len(c.torrents_info(status_filter='downloading')) == 0, 'downloading filter')
    check(set(c.torrents_tags()) >= {'hd', 'new'}, 'tags', c.torrents_tags())

    files = c.torrents_files(torrent_hash=x_hash)
    check(len(files) == 1 and files[0]['name'] == 'x.bin' and files[0]['progress'] == 1,
          'files', files)
    props = c.torrents_properties(torrent_hash=x_hash)
    check(props['save_path'] == f'{out}/tv' and props['total_size'] == x['total_size']
          and props['pieces_have'] == props['pieces_num'] > 0, 'properties', props)
    trackers = c.torrents_trackers(torrent_hash=x_hash)
    check([t['url'] for t in trackers[:3]] == ['** [DHT] **', '** [PeX] **', '** [LSD] **'],
          'trackers', trackers)
    pieces = c.torrents_piece_states(torrent_hash=x_hash)
    check(len(pieces) == props['pieces_num'] and set(pieces) == {2}, 'pieceStates', pieces)
    try:
        c.torrents_properties(torrent_hash='0' * 40)
        raise AssertionError('properties of an unknown hash')
    except qbittorrentapi.NotFound404Error:
        pass

    c.torrents_file_priority(torrent_hash=y_hash, file_ids=0, priority=0)
    check(c.torrents_files(torrent_hash=y_hash)[0]['priority'] == 0, 'filePrio 0')
    c.torrents_file_priority(torrent_hash=y_hash, file_ids=0, priority=1)
    check(c.torrents_files(torrent_hash=y_hash)[0]['priority'] == 1, 'filePrio 1')

    check(info[x_hash]['super_seeding'] is False, 'super_seeding off', info[x_hash])
    c.torrents_set_super_seeding(enable=True, torrent_hashes=x_hash)
    x = c.torrents_info(torrent_hashes=x_hash)[0]
    check(x['super_seeding'] is True and x['state'] in SEEDING, 'setSuperSeeding on', x)
    c.torrents_set_super_seeding(enable=False, torrent_hashes=x_hash)
    x = c.torrents_info(torrent_hashes=x_hash)[0]
    check(x['super_seeding'] is False, 'setSuperSeeding off', x)

    c.torrents_stop(torrent_hashes=x_hash)
    wait_state(c, x_hash, ('stoppedUP',), end)
    c.torrents_start(torrent_hashes=x_hash)
    wait_state(c, x_hash, SEEDING, end)
    c.torrents_remove_tags(tags='new', torrent_hashes=x_hash)

    # The Transmission RPC sees the same torrents, categories and tags as labels.
    from transmission_rpc import Client as TrClient
    tr = TrClient(host='127.0.0.1', port=int(port), username=user, password=password,
                  timeout=20)
    labels = {t.hashString: t.labels for t in tr.get_torrents(arguments=['hashString', 'labels'])}
    check(labels.get(x_hash) == ['category:tv', 'hd'], 'transmission labels', labels)
    res['transmission_labels'] = labels

    after = metrics(base, web.cookies)
    moved = after['spate_downloaded_bytes_total'] - before['spate_downloaded_bytes_total']
    res['metrics_downloaded'] = moved
    by_state = {k.split('state=')[1]: v for k, v in after.items()
                if k.startswith('spate_torrents|state=')}
    check(sum(by_state.values()) == 2, 'spate_torrents by state', by_state)
    check(after['spate_http_requests_total|api=qbittorrent'] >
          before['spate_http_requests_total|api=qbittorrent'], 'qbittorrent requests counted',
          after)
    check(after['spate_http_requests_total|api=transmission'] > 0,
          'transmission requests counted', after)
    res['metrics_by_state'] = by_state

    c.torrents_delete(delete_files=True, torrent_hashes=x_hash)
    c.torrents_delete(delete_files=False, torrent_hashes=y_hash)
    d = sync()
    check(set(d.get('torrents_removed') or []) == {x_hash, y_hash}, 'torrents_removed', d)
    check(c.torrents_info() == [], 'info after delete', c.torrents_info())

    r = web.post(f'{base}/api/v2/auth/logout', timeout=20)
    check(r.status_code == 200, 'logout', r.status_code)
    r = web.get(f'{base}/api/v2/app/version', timeout=20)
    check(r.status_code == 403, 'app/version after logout', r.status_code)
    res['maindata'] = stats
    return res


def wait_state(c, h, states, end):
    while True:
        t = c.torrents_info(torrent_hashes=h)
        if t and t[0]['state'] in states:
            return
        if time.monotonic() > end:
            raise AssertionError(f'{h} not in {states}: {t}')
        time.sleep(0.25)


def bypass(port):
    c = qbittorrentapi.Client(host='127.0.0.1', port=int(port), REQUESTS_ARGS={'timeout': 20})
    res = {'version': c.app_version(), 'torrents': [dict(t) for t in c.torrents_info()]}
    prefs = c.app_preferences()
    check(prefs['bypass_local_auth'] is True, 'bypass_local_auth', prefs)
    c2 = qbittorrentapi.Client(host='127.0.0.1', port=int(port), username='anyone',
                               password='anything', REQUESTS_ARGS={'timeout': 20})
    c2.auth_log_in()
    res['login'] = 'Ok.'
    check(requests.get(f'http://127.0.0.1:{port}/metrics', timeout=20).status_code == 200,
          '/metrics without password')
    return res


if __name__ == '__main__':
    mode, args = sys.argv[1], sys.argv[2:]
    print(json.dumps(full(*args) if mode == 'full' else bypass(*args)))
