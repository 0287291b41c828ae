#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of moto's Route53.

A configured share of requests is answered, without reaching moto, with Route53's real
error bodies for request throttling: `Throttling` ("Rate exceeded") and, alternately,
`PriorRequestNotComplete`, both HTTP 400 as Route53 sends them. So the operator's pacing
and retries are tested through the real AWS SDK. The share is deterministic (request n
is refused when floor((n+1)*share) > floor(n*share)): 0.3 refuses 3 requests in 10,
never two in a row.

    route53_proxy.py --listen 127.0.0.1:PORT --upstream http://127.0.0.1:MOTO --share 0.3

GET /_proxy/stats answers {"requests": N, "throttled": M, "held": H, "by_code": {...}}
(JSON). POST /_proxy/hold with {"suffixes": ["/rrset", "/healthcheck"]} makes every POST
whose path ends with one of them reach moto and then hold its answer back until POST
/_proxy/release: the caller's change is made but it never learns so, which is where the
crash tests kill the operator. POST /_proxy/reject with {"names": ["host.example.", ...]}
makes every ChangeResourceRecordSets whose batch names one of them fail, without reaching
moto, with Route53's real `InvalidChangeBatch` answer (HTTP 400, root element
`InvalidChangeBatch` with its `Messages`), as Route53 refuses a whole batch for one bad
change; batches without those names pass. Standard library only.
"""

import argparse
import http.client
import json
import math
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BODY = """<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"""

REJECTED = """<?xml version="1.0" encoding="UTF-8"?>
<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Messages><Message>{message}</Message></Messages><RequestId>{rid}</RequestId></InvalidChangeBatch>"""

FAULTS = [
    ("Throttling", "Rate exceeded"),
    ("PriorRequestNotComplete", "The request was rejected because Route 53 was still processing a prior request."),
]

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class State:
    def __init__(self, share):
        self.share = share
        self.lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.by_code = {}
        self.hold = []
        self.held = 0
        self.released = threading.Event()
        self.reject = []
        self.rejected = 0

    def rejects(self, command, path, body):
        """The name of a change batch to refuse as a whole, if it names a rejected one."""
        with self.lock:
            if command != "POST" or "/rrset" not in path.split("?", 1)[0]:
                return None
            text = body.decode("utf-8", "replace")
            for name in self.reject:
                bare = name.rstrip(".")
                if f"<Name>{bare}.</Name>" in text or f"<Name>{bare}</Name>" in text:
                    self.rejected += 1
                    return bare
            return None

    def holds(self, command, path):
        with self.lock:
            path = path.split("?", 1)[0]
            if command == "POST" and any(path.endswith(s) for s in self.hold):
                self.held += 1
                return True
            return False

    def next_fault(self):
        with self.lock:
            n = self.requests
            self.requests += 1
            if math.floor((n + 1) * self.share) > math.floor(n * self.share):
                code, message = FAULTS[self.throttled % len(FAULTS)]
                self.throttled += 1
                self.by_code[code] = self.by_code.get(code, 0) + 1
                return code, message
            return None


def handler(state, upstream):
    up = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/_proxy/stats":
                with state.lock:
                    stats = {"requests": state.requests, "throttled": state.throttled,
                             "held": state.held, "rejected": state.rejected,
                             "by_code": dict(state.by_code)}
                return self.reply(200, [("Content-Type", "application/json")],
                                  json.dumps(stats).encode())
            if self.path == "/_proxy/hold":
                with state.lock:
                    state.hold = list(json.loads(body or b"{}").get("suffixes", []))
                    state.released.clear()
                return self.reply(200, [], b"")
            if self.path == "/_proxy/reject":
                with state.lock:
                    state.reject = list(json.loads(body or b"{}").get("names", []))
                return self.reply(200, [], b"")
            if self.path == "/_proxy/release":
                with state.lock:
                    state.hold = []
                    state.released.set()
                return self.reply(200, [], b"")
            bad = state.rejects(self.command, self.path, body)
            if bad:
                message = (f"RRSet with DNS name {bad}. is not permitted: the change was "
                           "refused by the test proxy")
                xml = REJECTED.format(message=message, rid=uuid.uuid4()).encode()
                return self.reply(400, [("Content-Type", "text/xml"),
                                        ("x-amzn-RequestId", str(uuid.uuid4()))], xml)
            fault = state.next_fault()
            if fault:
                code, message = fault
                xml = BODY.format(code=code, message=message, rid=uuid.uuid4()).encode()
                return self.reply(400, [("Content-Type", "text/xml"),
                                        ("x-amzn-RequestId", str(uuid.uuid4()))], xml)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            headers["Host"] = up.netloc
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
            conn.close()
            if state.holds(self.command, self.path):
                state.released.wait(300)
            try:
                self.reply(resp.status, out, data)
            except OSError:
                pass  # the caller is gone (killed while its answer was held)

        do_GET = do_POST = do_DELETE = do_PUT = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--upstream", required=True, help="moto's URL")
    p.add_argument("--share", type=float, default=0.3, help="share of requests refused")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(State(a.share), a.upstream))
    server.serve_forever()


if __name__ == "__main__":
    main()
