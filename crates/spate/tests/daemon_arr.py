# What Sonarr/Radarr/Lidarr do to a Transmission server, through the PyPI client
# transmission-rpc (run by the test venv's python, SPATE_TEST_PYTHON). Used by
# tests/daemon_interop.rs; every mode prints one JSON object on stdout.
#
#   add PORT DIR LABEL TORRENT...   get_session, add each .torrent (bytes) to DIR with LABEL,
#                                   then the first one again (a duplicate)
#   wait PORT SECONDS HASH...       until every HASH is done and seeding; the *arr fields
#   finish PORT SEED_ID QUEUE_ID    change_torrent (seed ratio), queue moves, then
#                                   remove_torrent(SEED_ID, delete_data=True)
import json
import sys
import time

from transmission_rpc import Client

# The fields Sonarr/Radarr ask torrent-get for, and more that *arr-like tools read.
ARR_FIELDS = [
    'id', 'name', 'hashString', 'status', 'percentDone', 'leftUntilDone', 'sizeWhenDone',
    'totalSize', 'eta', 'downloadDir', 'errorString', 'error', 'uploadRatio',
    'seedRatioLimit', 'seedRatioMode', 'seedIdleLimit', 'seedIdleMode', 'isFinished',
    'labels', 'files', 'fileStats', 'trackers', 'secondsDownloading', 'secondsSeeding',
    'uploadedEver', 'downloadedEver', 'addedDate', 'doneDate', 'queuePosition',
    'magnetLink', 'rateDownload', 'rateUpload', 'file-count', 'isPrivate',
]


def client(port):
    return Client(host='127.0.0.1', port=int(port), timeout=20)


def add(port, directory, label, torrents):
    c = client(port)
    s = c.get_session()
    out = {
        'version': s.version,
        'rpc_version': s.rpc_version,
        'rpc_version_minimum': s.rpc_version_minimum,
        'download_dir': s.download_dir,
        'added': [],
    }
    for path in torrents:
        with open(path, 'rb') as f:
            data = f.read()
        t = c.add_torrent(data, download_dir=directory, labels=[label])
        out['added'].append({'id': t.id, 'name': t.name, 'hashString': t.hashString})
    with open(torrents[0], 'rb') as f:
        t = c.add_torrent(f.read(), download_dir=directory, labels=[label])
    out['duplicate'] = {'id': t.id, 'name': t.name, 'hashString': t.hashString}
    return out


def wait(port, seconds, hashes):
    c = client(port)
    end = time.monotonic() + float(seconds)
    while True:
        ts = c.get_torrents(arguments=ARR_FIELDS)
        by_hash = {t.fields['hashString']: t.fields for t in ts}
        # Done: all there, and seeding (5 queued to seed, 6 seeding), as *arr waits for.
        done = all(h in by_hash and by_hash[h].get('percentDone') == 1
                   and by_hash[h].get('status') in (5, 6) for h in hashes)
        if done or time.monotonic() > end:
            return {'done': done, 'torrents': [t.fields for t in ts]}
        time.sleep(0.3)


def finish(port, seed_id, queue_id):
    c = client(port)
    seed_id, queue_id = int(seed_id), int(queue_id)
    out = {}
    c.change_torrent(seed_id, seed_ratio_limit=1.5, seed_ratio_mode=1)
    t = c.get_torrent(seed_id, arguments=['seedRatioLimit', 'seedRatioMode'])
    out['after_change'] = {k: t.fields[k] for k in ('seedRatioLimit', 'seedRatioMode')}

    def positions():
        return {str(t.id): t.fields['queuePosition']
                for t in c.get_torrents(arguments=['queuePosition'])}

    out['queue_before'] = positions()
    c.queue_top(queue_id)
    out['queue_after_top'] = positions()
    c.queue_bottom(queue_id)
    out['queue_after_bottom'] = positions()
    c.queue_up(queue_id)
    out['queue_after_up'] = positions()
    c.queue_down(queue_id)
    out['queue_after_down'] = positions()

    c.remove_torrent(seed_id, delete_data=True)
    out['ids_after_remove'] = sorted(t.id for t in c.get_torrents(arguments=['id']))
    return out


def main(argv):
    mode = argv[1]
    if mode == 'add':
        out = add(argv[2], argv[3], argv[4], argv[5:])
    elif mode == 'wait':
        out = wait(argv[2], argv[3], argv[4:])
    elif mode == 'finish':
        out = finish(argv[2], argv[3], argv[4])
    else:
        print('unknown mode ' + mode, file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
