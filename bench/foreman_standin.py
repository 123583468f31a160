#!/usr/bin/env python3
"""A stand-in for Foreman's upload API, for bench/facts.sh: answers what the
bridge forwards (facts, config reports) the way Foreman does (201), and
counts and timestamps every request per path, so the benchmark can tell
whether forwarding kept up and at what rate Foreman was loaded.

  foreman_standin.py --port P [--delay-ms MS]

  GET  /api/v2/current_user        200, an administrator (the bridge's start-up check)
  POST /api/v2/hosts/facts         201 (also /api/hosts/facts)
  POST /api/v2/config_reports      201 (also /api/config_reports)
  GET  /counts                     {"paths": {"POST /api/v2/hosts/facts": n, ...},
                                    "bytes": {...}, "per_second": {path: {epoch_s: n}},
                                    "certnames": {certname: n}, "first": {...}, "last": {...}}
  GET  /counts?brief=1             only "paths"

--delay-ms holds every upload answer that long (Foreman's import takes time;
0 by default: the benchmark measures the bridge, not Foreman). Standard
library only; one thread per connection (keep-alive).
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
PATHS = {}        # "METHOD path" -> requests
BYTES = {}        # "METHOD path" -> body bytes
PER_SECOND = {}   # "METHOD path" -> {epoch second: requests}
FIRST, LAST = {}, {}
CERTNAMES = {}    # facts uploads per certname (the payload's certname, else name)
UPLOADS = {"/api/v2/hosts/facts", "/api/hosts/facts", "/api/v2/config_reports", "/api/config_reports"}


def count(key, n_bytes, certname=None):
    now = time.time()
    with LOCK:
        PATHS[key] = PATHS.get(key, 0) + 1
        BYTES[key] = BYTES.get(key, 0) + n_bytes
        sec = PER_SECOND.setdefault(key, {})
        sec[int(now)] = sec.get(int(now), 0) + 1
        FIRST.setdefault(key, now)
        LAST[key] = now
        if certname:
            CERTNAMES[certname] = CERTNAMES.get(certname, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body
    # would wait for the client's delayed ACK (40 ms per answer).
    disable_nagle_algorithm = True
    delay = 0.0

    def log_message(self, *args):  # one line per request would cost more than the answer
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/api/v2/current_user":
            count(f"GET {path}", 0)
            self.answer(200, {"id": 1, "login": "admin", "admin": True})
        elif path == "/counts":
            with LOCK:
                body = {"paths": dict(PATHS)}
                if "brief=1" not in query:
                    body.update(bytes=dict(BYTES), per_second={k: dict(v) for k, v in PER_SECOND.items()},
                                certnames=dict(CERTNAMES), first=dict(FIRST), last=dict(LAST))
            self.answer(200, body)
        else:
            self.answer(404, {"message": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = self.path.partition("?")[0]
        if path not in UPLOADS:
            self.answer(404, {"message": "not found"})
            return
        certname = None
        if path.endswith("/hosts/facts"):
            try:
                payload = json.loads(body)
                certname = payload.get("certname") or payload.get("name")
            except ValueError:
                self.answer(400, {"status": 400, "error": "There was a problem in the JSON you submitted"})
                return
        if self.delay:
            time.sleep(self.delay)
        count(f"POST {path}", len(body), certname)
        if certname:
            self.answer(201, {"id": 1, "name": certname})
        else:
            self.answer(201, {"id": 1})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    Handler.delay = args.delay_ms / 1000.0
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
