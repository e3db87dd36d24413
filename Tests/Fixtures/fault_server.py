#!/usr/bin/env python3
"""A local HTTP server for fetcher and cache tests that serves files and injects faults.

    python3 fault_server.py DIR [MAX_SECONDS [ADDRESS [LATENCY_MS]]]

Binds ADDRESS (default 127.0.0.1) on a free port, prints "PORT <n>" on stdout, then serves the files under DIR
(HTTP/1.1, keep-alive, Content-Length). It exits when killed, when its standard input reaches
end of file (so it dies with the test process that holds the other end of the pipe), or after
MAX_SECONDS (default 600). LATENCY_MS (default 0) delays every file response by that many
milliseconds, like a distant server (benchmarks). Standard library only.

Faults are chosen by the query string of a request for a file (the file is served once the
fault has been injected `times` times; without `times` the fault is permanent):

    ?fault=500&times=N            status 500, N times, then the file
    ?fault=429&times=N&retry_after=S
                                  status 429 with "Retry-After: S", N times, then the file
    ?fault=reset&times=N          the connection is reset (RST) without a response
    ?fault=truncate&times=N       Content-Length of the whole file, half the body, then close
    ?fault=slow&delay=S&times=N   the response starts after S seconds
    ?fault=404                    status 404 (any path that is not a file also gives 404)
    ?fault=notimage               status 200 with an HTML page
    ?fault=bomb                   a 50000x50000 grayscale PNG of about a hundred bytes
    ?fault=big&size=N[&chunked=1] N bytes (chunked: no Content-Length, sent in pieces)
    ?fault=redirect&to=/PATH      302 to /PATH;  ?fault=redirect_loop: 302 to itself, forever

Counters: GET /__stats returns JSON {"requests": {target: count}, "connections": n}, where a
target is the path with its query string exactly as requested; GET /__reset zeroes them.
"""
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
LOCK = threading.Lock()
REQUESTS = {}      # target -> requests seen
CONNECTIONS = [0]  # connections accepted
LATENCY = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0


def bomb_png():
    """A valid PNG header for a 50000x50000 8-bit gray image with a tiny IDAT."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def setup(self):
        super().setup()
        with LOCK:
            CONNECTIONS[0] += 1

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_body(self, status, body, content_type="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        target = self.path
        parts = urlsplit(target)
        if parts.path == "/__stats":
            with LOCK:
                body = json.dumps({"requests": REQUESTS, "connections": CONNECTIONS[0]}).encode()
            return self.send_body(200, body, "application/json")
        if parts.path == "/__reset":
            with LOCK:
                REQUESTS.clear()
                CONNECTIONS[0] = 0
            return self.send_body(200, b"{}", "application/json")

        with LOCK:
            REQUESTS[target] = REQUESTS.get(target, 0) + 1
            seen = REQUESTS[target]
        if LATENCY > 0:
            time.sleep(LATENCY)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        fault = q.get("fault")
        times = int(q["times"]) if "times" in q else None
        active = fault is not None and (times is None or seen <= times)

        if active and fault == "500":
            return self.send_body(500, b"injected failure\n", "text/plain")
        if active and fault == "429":
            return self.send_body(429, b"slow down\n", "text/plain", [("Retry-After", q.get("retry_after", "1"))])
        if active and fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if active and fault == "slow":
            time.sleep(float(q.get("delay", "5")))
        if active and fault == "404":
            return self.send_body(404, b"not found\n", "text/plain")
        if active and fault == "notimage":
            return self.send_body(200, b"<!DOCTYPE html><html><body>Not an image</body></html>\n", "text/html")
        if active and fault == "bomb":
            return self.send_body(200, bomb_png(), "image/png")
        if active and fault == "redirect":
            return self.send_body(302, b"", headers=[("Location", q.get("to", "/"))])
        if active and fault == "redirect_loop":
            return self.send_body(302, b"", headers=[("Location", target)])
        if active and fault == "big":
            size = int(q.get("size", "1000000"))
            if q.get("chunked") == "1":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                piece = b"x" * 65536
                sent = 0
                try:
                    while sent < size:
                        n = min(len(piece), size - sent)
                        self.wfile.write(b"%x\r\n" % n + piece[:n] + b"\r\n")
                        sent += n
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                return
            return self.send_body(200, b"x" * size)

        path = os.path.normpath(os.path.join(ROOT, unquote(parts.path).lstrip("/")))
        if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
            return self.send_body(404, b"not found\n", "text/plain")
        with open(path, "rb") as f:
            body = f.read()
        if active and fault == "truncate":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_body(200, body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def exit_when_orphaned(max_seconds):
    """Ends the process when stdin closes (the parent died or let go) or after max_seconds."""
    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except OSError:
            pass
        os._exit(0)
    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Timer(max_seconds, lambda: os._exit(0)).start()


def main():
    server = Server((sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1", 0), Handler)
    exit_when_orphaned(float(sys.argv[2]) if len(sys.argv) > 2 else 600)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
