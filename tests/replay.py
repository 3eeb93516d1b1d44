"""A real HTTP server on loopback that replays recorded payloads, for testing live clients.

Script it with `server.add(path, Reply(...), Reply(...))`: successive requests to that path (query
string ignored unless the key includes one) get the replies in order, the last one repeating.
Every request is recorded (path, query, headers, time) so tests can check politeness and params.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PAYLOADS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "payloads"


@dataclass
class Reply:
    body: bytes | str = b""
    status: int = 200
    headers: dict = field(default_factory=dict)
    content_type: str = "application/xml; charset=utf-8"
    truncate_at: int | None = None  # send only this many bytes of the body, then close (a cut-off reply)

    @classmethod
    def payload(cls, relpath: str, **kw) -> "Reply":
        return cls(body=(PAYLOADS / relpath).read_bytes(), **kw)


@dataclass
class Request:
    path: str
    query: dict
    headers: dict
    at: float


class ReplayServer:
    def __init__(self):
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                server.requests.append(Request(parts.path, parse_qs(parts.query), dict(self.headers), time.monotonic()))
                replies = server.routes.get(self.path) or server.routes.get(parts.path)
                if not replies:
                    reply = Reply(b"not found", status=404, content_type="text/plain")
                else:
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, str(v))
                if reply.truncate_at is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if reply.truncate_at is not None:
                    self.wfile.write(body[: reply.truncate_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def __enter__(self) -> "ReplayServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
