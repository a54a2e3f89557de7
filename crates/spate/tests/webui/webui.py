"""The web UI in headless Chromium against a real `spate daemon` fed by libtorrent seeders.

Run by crates/spate/tests/webui.rs with Debian's /usr/bin/python3 (python3-selenium,
chromium, chromium-driver) and one argument: a JSON file naming the daemon's URL and
folders, the fixtures, the artifacts folder and how many torrents the scale part adds.
Each step prints a line; a failed check raises, prints the browser's log and exits 1.
"""

import base64
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

CFG = json.load(open(sys.argv[1]))
URL = CFG["url"]
ART = CFG["artifacts"]
os.makedirs(ART, exist_ok=True)
LOG = []
T0 = time.time()


def say(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


# --- the RPC, for checking what the UI did ----------------------------------------------------

class Rpc:
    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/transmission/rpc" % port
        self.sid = ""

    def post(self, body):
        for _ in range(3):
            req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers={
                "X-Transmission-Session-Id": self.sid, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    return json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                if e.code == 409:
                    self.sid = e.headers["X-Transmission-Session-Id"]
                    continue
                raise
        raise Fail("no session id")

    def call(self, method, params):
        r = self.post({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        if "error" in r:
            raise Fail("%s: %s" % (method, r["error"]))
        return r["result"]

    def torrent(self, hash_, fields):
        ts = self.call("torrent_get", {"ids": [hash_], "fields": fields})["torrents"]
        return ts[0] if ts else None


RPC = Rpc(CFG["rpc_port"])


# --- the browser --------------------------------------------------------------------------------

def browser():
    o = webdriver.ChromeOptions()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1366,860", "--lang=en-US",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="spate-chromium-")]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CFG.get("chromedriver", "/usr/bin/chromedriver")), options=o)
    d.set_script_timeout(120)
    return d


D = browser()


def logs():
    LOG.extend(D.get_log("browser"))
    return LOG


def wait(cond, what, timeout=60, every=0.2):
    end = time.time() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except Fail:
            raise
        except Exception as e:  # element not there yet, stale...
            last = repr(e)
        if time.time() > end:
            raise Fail("timed out (%ds) waiting for %s; last: %s" % (timeout, what, last))
        time.sleep(every)


def js(script, *args):
    return D.execute_script(script, *args)


def stub_notifications():
    # A stand-in for the Notification API, as if the user had allowed notifications
    # (headless Chromium shows none): records what the page raises.
    js("""window.__notes = window.__notes || [];
        window.Notification = class { static permission = 'granted';
          static requestPermission() { return Promise.resolve('granted'); }
          constructor(title, opts) { window.__notes.push([title, opts && opts.body]); } };""")


def notes():
    return js("return window.__notes || []")


def shot(name):
    path = os.path.join(ART, name + ".png")
    D.save_screenshot(path)
    say("screenshot %s" % path)


def rows():
    """The rendered rows: [{id, name, status, progress, selected}]."""
    return js("""return [...document.querySelectorAll('#list .row:not([hidden])')].map(r => ({
        id: Number(r.dataset.id), name: r.querySelector('.c-name').textContent,
        status: r.querySelector('.c-status').textContent,
        progress: r.querySelector('.c-progress b').textContent,
        selected: r.getAttribute('aria-selected') === 'true'}))""")


def row_el(name):
    for r in D.find_elements(By.CSS_SELECTOR, "#list .row:not([hidden])"):
        if r.find_element(By.CSS_SELECTOR, ".c-name").text == name:
            return r
    return None


def row(name):
    return next((r for r in rows() if r["name"] == name), None)


def unstale(action, tries=20):
    """Runs `action` again when the element it found was redrawn under it (the list and the
    filters' counts redraw as updates arrive)."""
    for i in range(tries):
        try:
            return action()
        except StaleElementReferenceException:
            if i == tries - 1:
                raise
            time.sleep(0.05)


def select_only(name):
    unstale(lambda: wait(lambda: row_el(name), "a row named %r" % name).click())
    wait(lambda: (row(name) or {}).get("selected"), "%r selected" % name, 10)


def click(css):
    unstale(lambda: D.find_element(By.CSS_SELECTOR, css).click())


def visible(css):
    els = D.find_elements(By.CSS_SELECTOR, css)
    return bool(els) and els[0].is_displayed()


def no_alert():
    try:
        a = D.switch_to.alert
        text = a.text
        a.dismiss()
        raise Fail("an alert opened: %r" % text)
    except NoAlertPresentException:
        pass


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def daemon_cpu(seconds):
    hz = os.sysconf("SC_CLK_TCK")
    a = cpu_ticks(CFG["daemon_pid"])
    time.sleep(seconds)
    b = cpu_ticks(CFG["daemon_pid"])
    return 100.0 * (b - a) / hz / seconds


# --- the steps ------------------------------------------------------------------------------------

def step_open():
    D.get(URL)
    wait(lambda: visible("#app") and js("return window.spatePerf && window.spatePerf.fullLoad !== null"), "the app to load")
    check(D.title == "spate", "title %r" % D.title)
    check(not visible("#login"), "no login page without a password")
    # Help dialog from the keyboard.
    D.find_element(By.TAG_NAME, "body").send_keys("?")
    wait(lambda: visible("#dlg-help"), "the help dialog")
    keys = D.find_element(By.ID, "help-keys").text
    check("Add torrents" in keys and "Alternative speed limits" in keys, "help lists shortcuts: %r" % keys[:200])
    click("#dlg-help button")
    say("page loaded, help dialog shows the shortcuts")


def step_idle_cpu():
    # One idle tab open on an empty daemon: polls every 2 s, the event stream open.
    pct = daemon_cpu(CFG.get("idle_seconds", 20))
    say("daemon CPU with one idle visible tab: %.2f%% of a core" % pct)
    check(pct < CFG.get("idle_cpu_max", 1.0), "daemon CPU with an idle tab %.2f%% >= limit" % pct)
    polls = js("return window.spatePerf.polls.length")
    check(polls >= 3, "the tab polls while visible (%d polls)" % polls)


def step_add_file():
    album = CFG["album"]
    click("#btn-add")
    wait(lambda: visible("#dlg-add"), "the add dialog")
    D.find_element(By.ID, "add-file").send_keys(album["torrent"])
    wait(lambda: visible("#add-meta"), "the file tree of the .torrent")
    check(D.find_element(By.ID, "add-name").text == album["name"], "torrent name shown")
    nodes = D.find_elements(By.CSS_SELECTOR, "#add-tree .node")
    names = [n.text.split("\n")[0] for n in nodes]
    for f in album["files"]:
        check(any(f in n for n in names), "file %s in the tree %r" % (f, names))
    # Skip the last file, make the first one high priority.
    for n in nodes:
        label = n.find_element(By.CSS_SELECTOR, "label").text
        if album["skip"] in label:
            n.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        if album["high"] in label:
            Select(n.find_element(By.TAG_NAME, "select")).select_by_value("high")
    dir_box = D.find_element(By.CSS_SELECTOR, "#add-tree .node.dir input[type=checkbox]")
    check(js("return arguments[0].indeterminate", dir_box), "the folder box shows a partial choice")
    shot("add-dialog")
    click("#add-ok")
    wait(lambda: not visible("#dlg-add"), "the add dialog to close")
    t = wait(lambda: RPC.torrent(album["hash"], ["id", "files", "file_stats", "priorities", "wanted"]), "the torrent in the daemon")
    names = [f["name"].split("/")[-1] for f in t["files"]]
    wanted = dict(zip(names, [s["wanted"] for s in t["file_stats"]]))
    prio = dict(zip(names, [s["priority"] for s in t["file_stats"]]))
    check(wanted[album["skip"]] is False and all(wanted[n] for n in names if n != album["skip"]), "wanted %r" % wanted)
    check(prio[album["high"]] == 1, "priority %r" % prio)
    say("added %s by file upload, %s skipped, %s high" % (album["name"], album["skip"], album["high"]))
    wait(lambda: (row(album["name"]) or {}).get("progress") == "100.0%", "%s to complete in the list" % album["name"], 120)
    t = RPC.torrent(album["hash"], ["file_stats", "files", "percent_done", "left_until_done"])
    done = {f["name"].split("/")[-1]: s["bytes_completed"] for f, s in zip(t["files"], t["file_stats"])}
    check(done[album["skip"]] == 0, "the skipped file got no bytes: %r" % done)
    path = os.path.join(CFG["download_dir"], album["name"], album["skip"])
    check(not os.path.exists(path) or os.path.getsize(path) == 0 or open(path, "rb").read().count(0) == os.path.getsize(path),
          "the skipped file has no data on disk")
    say("%s complete from the libtorrent seeder; %s skipped (0 bytes)" % (album["name"], album["skip"]))


def step_details():
    album = CFG["album"]
    r = wait(lambda: row_el(album["name"]), "the album row")
    ActionChains = webdriver.ActionChains
    ActionChains(D).double_click(r).perform()
    wait(lambda: visible("#details"), "the details pane")
    wait(lambda: D.find_element(By.ID, "details-title").text == album["name"], "details of the album")
    general = D.find_element(By.ID, "general").text
    check(album["hash"] in general, "the info-hash in the general tab")
    check(CFG["download_dir"] in general, "the save path in the general tab")
    click("#tab-files")
    wait(lambda: len(D.find_elements(By.CSS_SELECTOR, "#files .node")) >= len(album["files"]), "the file tree")

    def file_node(name):
        for n in D.find_elements(By.CSS_SELECTOR, "#files .node"):
            if n.find_element(By.CSS_SELECTOR, "label").text.strip() == name:
                return n
        raise Fail("no node %s" % name)
    skip = file_node(album["skip"])
    check(not skip.find_element(By.CSS_SELECTOR, "input").is_selected(), "the skipped file shows unchecked")
    hi = file_node(album["high"])
    check(Select(hi.find_element(By.TAG_NAME, "select")).first_selected_option.text == "High", "high priority shows")
    # An audio file has a play link to the daemon's stream; the page's own session (its
    # cookie) may fetch a range of it, which comes once its pieces are verified.
    play = hi.find_element(By.CSS_SELECTOR, "a.play")
    href = play.get_attribute("href")
    names = [f["name"].split("/")[-1] for f in RPC.torrent(album["hash"], ["files"])["files"]]
    check(href.endswith("/stream/%s/%d" % (album["hash"], names.index(album["high"]))), "play link %r" % href)
    check(not file_node(album["skip"]).find_elements(By.CSS_SELECTOR, "a.play"), "no play link for a .bin file")
    got = D.execute_async_script("""const done = arguments[arguments.length - 1];
        fetch(arguments[0], { headers: { Range: 'bytes=10-109' } })
          .then(async (r) => done([r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength]))
          .catch((e) => done(['error', String(e), 0]));""", href)
    check(got == [206, "audio/mpeg", 100], "a range of the stream from the page: %r" % (got,))
    say("details: the audio file's play link streams a range (%r)" % (got,))
    # Change a priority while it runs.
    low = album["low"]
    unstale(lambda: Select(file_node(low).find_element(By.TAG_NAME, "select")).select_by_value("-1"))
    wait(lambda: dict(zip([f["name"].split("/")[-1] for f in RPC.torrent(album["hash"], ["files"])["files"]],
                          [s["priority"] for s in RPC.torrent(album["hash"], ["file_stats"])["file_stats"]]))[low] == -1,
         "priority of %s set to low" % low, 20)
    say("details: general shows hash and path; files show the skip and priorities; %s set to low" % low)
    # Unchecking a file in the details while the torrent runs, then checking it again.
    def wanted_of(name):
        t = RPC.torrent(album["hash"], ["files", "file_stats"])
        return dict(zip([f["name"].split("/")[-1] for f in t["files"]], [s["wanted"] for s in t["file_stats"]]))[name]
    unstale(lambda: file_node(low).find_element(By.CSS_SELECTOR, "input").click())
    wait(lambda: wanted_of(low) is False, "%s unwanted after unchecking it in the details" % low, 20)
    wait(lambda: not file_node(low).find_element(By.CSS_SELECTOR, "input").is_selected(), "the box stays unchecked", 10)
    unstale(lambda: file_node(low).find_element(By.CSS_SELECTOR, "input").click())
    wait(lambda: wanted_of(low) is True, "%s wanted again" % low, 20)
    say("details: %s unchecked and checked again while it runs" % low)
    shot("details-files")
    click("#tab-peers")
    wait(lambda: D.find_element(By.ID, "peers").text != "", "the peers tab")
    click("#tab-trackers")
    click("#tab-pieces")
    wait(lambda: "pieces" in D.find_element(By.ID, "pieces-info").text, "the piece map")
    info = D.find_element(By.ID, "pieces-info").text
    say("pieces tab: %s" % info)
    # The map is drawn: some pixels are the "have" colour.
    painted = js("""const c = document.getElementById('pieces-canvas'); const g = c.getContext('2d');
        const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;""")
    check(painted > 0, "the piece map is drawn")
    shot("details-pieces")
    click("#tab-speed")
    time.sleep(2.5)
    click("#tab-general")
    click("#details-close")
    wait(lambda: not visible("#details"), "details closed")


def step_magnet():
    m = CFG["magnet"]
    # What the browser opens when the page is the magnet: handler (/#add=%s).
    D.get(URL + "#add=" + urllib.parse.quote(m["link"], safe=""))
    wait(lambda: visible("#dlg-add"), "the add dialog from the #add= link")
    check(D.find_element(By.ID, "add-url").get_attribute("value") == m["link"], "the magnet link filled in")
    check(not js("return location.hash"), "the #add= hash is consumed")
    stub_notifications()
    click("#add-ok")
    wait(lambda: not visible("#dlg-add"), "the add dialog to close")
    wait(lambda: (row(m["name"]) or {}).get("progress") == "100.0%", "%s to complete by magnet link" % m["name"], 120)
    # The completion event came over the SSE stream: a toast says so.
    wait(lambda: "Download complete: " + m["name"] in D.find_element(By.ID, "toasts").text, "the completion toast (SSE)", 20)
    wait(lambda: ["Download complete", m["name"]] in notes(), "a browser notification of the completion", 10)
    say("magnet link %s complete; the 'completed' event showed as a toast and a notification" % m["name"])
    data = open(os.path.join(CFG["download_dir"], m["name"]), "rb").read()
    check(data == open(m["src"], "rb").read(), "the magnet download has the seeder's bytes")


def step_stop_start():
    m = CFG["magnet"]
    select_only(m["name"])
    D.find_element(By.ID, "list").send_keys("p")  # the shortcut for stop
    wait(lambda: RPC.torrent(m["hash"], ["status"])["status"] == 0, "stopped in the daemon", 20)
    wait(lambda: row(m["name"])["status"] in ("Stopped", "Finished"), "stopped in the list", 20)
    click('button[data-act="start"]')
    wait(lambda: RPC.torrent(m["hash"], ["status"])["status"] in (5, 6), "seeding again in the daemon", 30)
    wait(lambda: row(m["name"])["status"] in ("Seeding", "Queued to seed"), "seeding in the list", 20)
    say("stop (P key) and start (button) of %s" % m["name"])


def step_label_filter():
    m = CFG["magnet"]
    select_only(m["name"])
    click('button[data-act="label"]')
    wait(lambda: visible("#dlg-label"), "the label dialog")
    box = D.find_element(By.ID, "label-input")
    box.clear()
    box.send_keys("linux-isos")
    click("#label-ok")
    wait(lambda: RPC.torrent(m["hash"], ["labels"])["labels"] == ["linux-isos"], "the label set", 20)
    btn = wait(lambda: D.find_element(By.CSS_SELECTOR, '#label-filters button[data-filter="linux-isos"]'), "the label filter", 20)
    btn.click()
    wait(lambda: [r["name"] for r in rows()] == [m["name"]], "only the labelled torrent shown")
    click('#label-filters button[data-filter="*"]')
    click('#status-filters button[data-filter="seeding"]')
    wait(lambda: all(r["status"] == "Seeding" for r in rows()) and rows(), "the seeding filter")
    click('#status-filters button[data-filter="all"]')
    say("label set and filtered by; status filter")


def step_xss():
    x = CFG["xss"]
    # Dropped on the page (a synthetic drop of a File with the .torrent's bytes: selenium
    # cannot drag from the desktop).
    data = base64.b64encode(open(x["torrent"], "rb").read()).decode()
    js("""const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'hostile.torrent', {type: 'application/x-bittorrent'}));
        for (const type of ['dragenter', 'dragover', 'drop'])
          document.body.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));""", data)
    wait(lambda: visible("#dlg-add"), "the add dialog after the drop")
    wait(lambda: D.find_element(By.ID, "add-name").text == x["name"], "the hostile name shown as text in the dialog")
    paused = D.find_element(By.ID, "add-paused")
    if not paused.is_selected():
        paused.click()
    click("#add-ok")
    wait(lambda: row(x["name"]), "the hostile name as a row's text")
    time.sleep(1)
    no_alert()
    imgs = js("return [...document.querySelectorAll('img')].map(i => i.getAttribute('src'))")
    check(all(s != "x" for s in imgs), "no <img src=x> element made: %r" % imgs)
    ActionChains = webdriver.ActionChains
    ActionChains(D).double_click(row_el(x["name"])).perform()
    wait(lambda: D.find_element(By.ID, "details-title").text == x["name"], "the details title as text")
    click("#tab-files")
    time.sleep(1)
    no_alert()
    click("#details-close")
    say("the torrent named %s renders as text; no alert, no <img>" % x["name"])


def step_queue_verify_announce():
    x = CFG["xss"]
    m = CFG["magnet"]
    pos = lambda h: RPC.torrent(h, ["queue_position"])["queue_position"]
    xh = wait(lambda: next((t["hashString"] for t in RPC.post({"method": "torrent-get", "arguments": {"fields": ["hashString", "name"]}})["arguments"]["torrents"] if t["name"] == x["name"]), None), "the hostile torrent's hash")
    select_only(x["name"])
    check(pos(xh) > 0, "the newest torrent is not first in the queue yet")
    D.find_element(By.ID, "list").send_keys(Keys.SHIFT, Keys.HOME)
    wait(lambda: pos(xh) == 0, "Shift+Home moves it to the top of the queue", 10)
    wait(lambda: js("return [...document.querySelectorAll('#list .row:not([hidden])')].find(r => r.querySelector('.c-name').textContent === arguments[0]).querySelector('.c-queue').textContent", x["name"]) == "1", "the # column shows 1", 10)
    click('button[data-act="queue-down"]')
    wait(lambda: pos(xh) == 1, "queue down by the button", 10)
    # Verify finds a changed byte: stopped, one byte flipped on disk, verified (V) -> less
    # than complete; started -> the seeder's piece again, complete, the same bytes.
    select_only(m["name"])
    D.find_element(By.ID, "list").send_keys("p")
    wait(lambda: RPC.torrent(m["hash"], ["status"])["status"] == 0, "stopped for the verify", 20)
    path = os.path.join(CFG["download_dir"], m["name"])
    with open(path, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    D.find_element(By.ID, "list").send_keys("v")
    wait(lambda: RPC.torrent(m["hash"], ["percent_done", "status"])["percent_done"] < 1, "the verify to find the changed byte", 30)
    wait(lambda: row(m["name"])["progress"] != "100.0%", "the list to show it incomplete", 20)
    click('button[data-act="start"]')
    wait(lambda: RPC.torrent(m["hash"], ["percent_done"])["percent_done"] == 1, "the piece fetched again", 60)
    check(open(path, "rb").read() == open(m["src"], "rb").read(), "the repaired file has the seeder's bytes")
    click('button[data-act="reannounce"]')
    wait(lambda: "Announcing 1 torrent" in D.find_element(By.ID, "toasts").text, "the re-announce confirmed", 10)
    check(not D.find_elements(By.CSS_SELECTOR, "#toasts .toast.err"), "no error toast: %r" % D.find_element(By.ID, "toasts").text)
    say("queue top (Shift+Home) and down (button); verify (V) found a flipped byte, start repaired it; re-announce")


def step_remove_with_data():
    album = CFG["album"]
    folder = os.path.join(CFG["download_dir"], album["name"])
    check(os.path.isdir(folder), "the album's data is on disk before the remove")
    select_only(album["name"])
    click('button[data-act="remove"]')
    wait(lambda: visible("#dlg-remove"), "the remove dialog")
    text = D.find_element(By.ID, "remove-consequence").text
    check("stay on disk" in text, "the dialog says the data stays: %r" % text)
    click("#remove-data")
    text = D.find_element(By.ID, "remove-consequence").text
    check("deleted" in text, "the dialog says the data goes: %r" % text)
    shot("remove-dialog")
    click("#remove-ok")
    wait(lambda: row(album["name"]) is None, "the row gone")
    wait(lambda: RPC.torrent(album["hash"], ["id"]) is None, "the torrent gone from the daemon", 20)
    wait(lambda: not os.path.exists(folder), "the album's files deleted", 30)
    say("removed %s with its data: %s is gone" % (album["name"], folder))


def step_error():
    # The album again, into a "folder" that is a file: the torrent fails, the list says so,
    # the error filter finds it, and the 'error' event raises a notification.
    album = CFG["album"]
    stub_notifications()
    click("#btn-add")
    wait(lambda: visible("#dlg-add"), "the add dialog")
    D.find_element(By.ID, "add-file").send_keys(album["torrent"])
    wait(lambda: visible("#add-meta"), "the file tree")
    box = D.find_element(By.ID, "add-dir")
    box.clear()
    box.send_keys(CFG["bad_dir"])
    click("#add-ok")
    wait(lambda: not visible("#dlg-add"), "the add dialog to close")
    wait(lambda: (row(album["name"]) or {}).get("status", "").startswith("Error"), "the error shown in the list", 60)
    status = row(album["name"])["status"]
    wait(lambda: any(n[0] == "Torrent error" and album["name"] in (n[1] or "") for n in notes()), "an error notification", 20)
    click('#status-filters button[data-filter="error"]')
    wait(lambda: [r["name"] for r in rows()] == [album["name"]], "the error filter shows only it")
    shot("error")
    click('#status-filters button[data-filter="all"]')
    select_only(album["name"])
    D.find_element(By.ID, "list").send_keys(Keys.DELETE)
    wait(lambda: visible("#dlg-remove"), "the remove dialog (Delete key)")
    click("#remove-ok")
    wait(lambda: row(album["name"]) is None, "the failed torrent removed")
    check(os.path.isfile(CFG["bad_dir"]), "the file in the way is untouched")
    say("error shown (%s), filtered, notified; removed with the Delete key" % status)


def step_settings_turtle():
    click("#btn-settings")
    wait(lambda: visible("#dlg-settings"), "the settings dialog")
    check(D.find_element(By.ID, "set-download_dir").get_attribute("value") == CFG["download_dir"], "download dir shown")
    box = D.find_element(By.ID, "set-download_queue_size")
    box.clear()
    box.send_keys("7")
    ratio = D.find_element(By.ID, "set-seed_ratio_limit")
    ratio.clear()
    ratio.send_keys("1.5")
    shot("settings")
    click("#settings-save")
    wait(lambda: not visible("#dlg-settings"), "settings saved")
    s = RPC.call("session_get", {"fields": ["download_queue_size", "seed_ratio_limit", "alt_speed_enabled"]})
    check(s["download_queue_size"] == 7 and abs(s["seed_ratio_limit"] - 1.5) < 1e-9, "settings applied: %r" % s)
    check(s["alt_speed_enabled"] is False, "turtle off at first")
    click("#btn-turtle")
    wait(lambda: RPC.call("session_get", {"fields": ["alt_speed_enabled"]})["alt_speed_enabled"] is True, "turtle on", 10)
    wait(lambda: D.find_element(By.ID, "btn-turtle").get_attribute("aria-pressed") == "true", "turtle button pressed")
    D.find_element(By.TAG_NAME, "body").send_keys("t")
    wait(lambda: RPC.call("session_get", {"fields": ["alt_speed_enabled"]})["alt_speed_enabled"] is False, "turtle off (T)", 10)
    say("settings saved through session-set; turtle toggled by click and by T")


def step_views():
    # Light theme list, then dark, then a phone.
    js("localStorage.removeItem('spate-theme')")
    D.refresh()
    wait(lambda: visible("#app") and rows(), "reloaded")
    select_only(CFG["magnet"]["name"])
    time.sleep(2.5)  # a few samples in the speed graph
    shot("list-light")
    click("#btn-theme")
    check(js("return document.documentElement.dataset.theme") == "dark", "dark theme on")
    bg = js("return getComputedStyle(document.body).backgroundColor")
    check(bg != "rgb(246, 247, 249)", "the dark background applies: %s" % bg)
    time.sleep(0.3)
    shot("list-dark")
    D.find_element(By.TAG_NAME, "body").send_keys("d")
    check(js("return document.documentElement.dataset.theme") == "light", "back to light by D")
    D.set_window_size(390, 844)
    time.sleep(0.5)
    check(js("return getComputedStyle(document.getElementById('list-head')).display") == "none", "phone: no column header")
    h = js("return document.querySelector('#list .row:not([hidden])').getBoundingClientRect().height")
    check(h > 60, "phone: rows are cards (%s px)" % h)
    shot("phone-list")
    row_el(CFG["magnet"]["name"]).click()
    wait(lambda: visible("#details"), "phone: a tap opens the details")
    rect = js("return document.getElementById('details').getBoundingClientRect().toJSON()")
    check(rect["width"] >= 380 and rect["top"] <= 1, "phone: the details are full-screen: %r" % rect)
    shot("phone-details")
    click("#details-close")
    D.set_window_size(1366, 860)
    say("screenshots of light, dark and phone views")


def step_login():
    # A daemon with a password: the page shows its own login form, never the browser's
    # Basic-auth popup (which would block the page: no DOM, an auth prompt instead).
    login = CFG["login"]
    D.get(URL)
    wait(lambda: visible("#login"), "the login page")
    check(not visible("#app"), "the app stays hidden before the login")
    no_alert()
    shot("login")
    D.find_element(By.ID, "login-user").send_keys(login["user"])
    D.find_element(By.ID, "login-pass").send_keys("wrong password")
    click("#login-form button[type=submit]")
    wait(lambda: "Wrong" in D.find_element(By.ID, "login-error").text, "a wrong password refused")
    check(not visible("#app"), "still logged out")
    box = D.find_element(By.ID, "login-pass")
    box.clear()
    box.send_keys(login["password"])
    click("#login-form button[type=submit]")
    wait(lambda: visible("#app") and not visible("#login"), "the app after logging in")
    wait(lambda: js("return window.spatePerf.fullLoad !== null"), "the list after logging in")
    wait(lambda: js("return window.spatePerf.polls.length") >= 2, "polls with the login", 20)
    check(D.find_element(By.ID, "sb-free").text.startswith("Free"), "session data shown")
    say("logged in through the page's form")
    # The cookie login: the SID cookie is HttpOnly (no script sees it) and survives a reload.
    check("SID" not in js("return document.cookie"), "the SID cookie is not readable by scripts")
    D.refresh()
    wait(lambda: visible("#app") and js("return window.spatePerf && window.spatePerf.fullLoad !== null"), "still logged in after a reload")
    check(not visible("#login"), "no login page after a reload")
    say("a reload keeps the login (SID cookie, HttpOnly)")
    click("#btn-logout")
    wait(lambda: visible("#login") and not visible("#app"), "the login page after logging out")
    D.refresh()
    wait(lambda: visible("#login"), "still logged out after a reload")
    say("logout ends the cookie session")


def step_no_js_errors():
    bad = []
    for e in logs():
        msg = e.get("message", "")
        if e.get("level") != "SEVERE":
            continue
        # The Transmission RPC's 409 (the session id handshake) is expected once per page.
        if e.get("source") == "network" and "/transmission/rpc" in msg and "409" in msg:
            continue
        # With a password: the 401s that make the page show its login form, and the
        # refused login of the wrong password.
        if CFG.get("login") and e.get("source") == "network" and ("401" in msg or "/api/v2/auth/login" in msg):
            continue
        bad.append(e)
    check(not bad, "the page logged errors: %s" % json.dumps(bad, indent=1))
    say("no JavaScript errors in the browser log (%d entries)" % len(LOG))


def step_scale():
    n = CFG["scale"]
    if n <= 0:
        return

    def benc(v):
        if isinstance(v, int):
            return b"i%de" % v
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, bytes):
            return b"%d:%s" % (len(v), v)
        if isinstance(v, dict):
            return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"
        raise TypeError(v)
    t0 = time.time()
    batch = 500
    for start in range(0, n, batch):
        calls = []
        for i in range(start, min(n, start + batch)):
            info = {"name": "bulk-%05d.bin" % i, "length": 16384, "piece length": 16384,
                    "pieces": hashlib.sha1(b"bulk %d" % i).digest()}
            calls.append({"jsonrpc": "2.0", "method": "torrent_add", "id": i, "params": {
                "metainfo": base64.b64encode(benc({"info": info})).decode(), "paused": True}})
        answers = RPC.post(calls)
        errors = [a for a in answers if "error" in a]
        check(not errors, "bulk add failed: %r" % errors[:2])
    say("added %d torrents over the RPC in %.1f s" % (n, time.time() - t0))
    # A fresh page: the whole list once.
    js("window.spatePerf = null")
    D.refresh()
    wait(lambda: js("return window.spatePerf && window.spatePerf.fullLoad"), "the big list to load", 120)
    fl = js("return window.spatePerf.fullLoad")
    dom_rows = js("return document.querySelectorAll('#list .row').length")
    check(fl["rows"] >= n, "all %d rows loaded (%r)" % (n, fl))
    check(dom_rows < 200, "virtualised: %d row elements in the DOM for %d torrents" % (dom_rows, fl["rows"]))
    say("SCALE %d torrents: list fetched in %d ms, rendered in %d ms (first paint %d ms after the request); %d row elements in the DOM"
        % (fl["rows"], fl["fetchMs"], fl["renderMs"], fl["totalMs"], dom_rows))
    # Update round trips: recently-active deltas (all 10,000 are 'recently added' for a minute).
    js("window.spatePerf.polls = []")
    wait(lambda: js("return window.spatePerf.polls.length") >= 3, "three polls", 60)
    polls = js("return window.spatePerf.polls")
    for p in polls:
        say("SCALE poll: %d changed rows, request %d ms, request+merge+render %d ms" % (p["rows"], p["fetchMs"], p["totalMs"]))
    # Sorting and scrolling 10,000 rows.
    t = js("""const t0 = performance.now(); document.querySelector('#list-head .h-size').click();
        return performance.now() - t0;""")
    say("SCALE sort of %d rows by size: %d ms" % (fl["rows"], t))
    t = js("""const l = document.getElementById('list'); const t0 = performance.now();
        l.scrollTop = l.scrollHeight / 2; l.dispatchEvent(new Event('scroll'));
        return new Promise(r => requestAnimationFrame(() => r(performance.now() - t0)));""")
    say("SCALE scroll to the middle: next frame after %d ms" % t)
    shot("scale-10k")
    # Once the adds are older than the session's "recently active" minute, a poll carries
    # only what changed: the steady state of a tab left open on 10,000 torrents.
    wait(lambda: any(p["rows"] < 100 for p in js("return window.spatePerf.polls")), "polls to carry only changes", 120, 1)
    js("window.spatePerf.polls = []")
    wait(lambda: js("return window.spatePerf.polls.length") >= 3, "three more polls", 30)
    for p in js("return window.spatePerf.polls"):
        say("SCALE steady poll: %d changed rows, request %d ms, request+merge+render %d ms" % (p["rows"], p["fetchMs"], p["totalMs"]))
    say("SCALE daemon CPU with %d torrents and one idle visible tab: %.2f%% of a core" % (fl["rows"], daemon_cpu(10)))
    # The tab hidden: no polling at all.
    count = js("return window.spatePerf.polls.length")
    js("Object.defineProperty(document, 'hidden', {value: true, configurable: true}); document.dispatchEvent(new Event('visibilitychange'))")
    time.sleep(5)
    check(js("return window.spatePerf.polls.length") <= count + 1, "no polls while hidden")
    js("Object.defineProperty(document, 'hidden', {value: false, configurable: true}); document.dispatchEvent(new Event('visibilitychange'))")
    wait(lambda: js("return window.spatePerf.polls.length") > count + 1, "polling again when visible", 20)
    say("hidden tab: polling paused; visible again: resumed")


def main():
    steps = [step_open, step_idle_cpu, step_add_file, step_details, step_magnet, step_stop_start,
             step_label_filter, step_xss, step_queue_verify_announce, step_remove_with_data, step_error, step_settings_turtle, step_views,
             step_no_js_errors, step_scale, step_no_js_errors]
    if CFG.get("login"):
        steps = [step_login, step_no_js_errors]
    only = os.environ.get("WEBUI_STEPS")
    try:
        for s in steps:
            if only and s.__name__ not in only.split(","):
                continue
            say("--- %s" % s.__name__)
            s()
        say("webui: all steps passed")
        return 0
    except Exception as e:
        say("FAILED: %s: %s" % (type(e).__name__, e))
        try:
            shot("failure")
        except Exception:
            pass
        for entry in logs():
            print("browser log:", entry, flush=True)
        return 1
    finally:
        D.quit()


if __name__ == "__main__":
    sys.exit(main())
