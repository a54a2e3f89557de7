"""A BEP 17 (httpseeds) server for crates/spate/tests/webseed.rs, on 127.0.0.1.

Usage: webseed_bep17.py FILE PIECE_LENGTH INFO_HASH_HEX
Prints its port on the first line of stdout, then answers
GET /seed?info_hash=..&piece=N&ranges=A-B with those bytes of piece N of FILE (200), and
anything else (another info-hash, a missing or bad parameter) with 400. Each request's
query is written to stderr, one a line.
"""
import http.server
import sys
import urllib.parse

path, piece_len, want_hash = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
with open(path, "rb") as f:
    data = f.read()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = urllib.parse.urlsplit(self.path).query
        params = {}
        for part in query.split("&"):
            key, _, value = part.partition("=")
            params[key] = urllib.parse.unquote_to_bytes(value)
        sys.stderr.write(query + "\n")
        try:
            if params.get("info_hash") != want_hash:
                raise ValueError("wrong info_hash")
            piece = int(params["piece"])
            first, last = (int(x) for x in params["ranges"].split(b"-"))
            start = piece * piece_len + first
            end = piece * piece_len + last + 1
            if first > last or end > min(len(data), (piece + 1) * piece_len):
                raise ValueError("range outside the piece")
            body, status = data[start:end], 200
        except (KeyError, ValueError) as e:
            body, status = str(e).encode(), 400
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
