"""A ``/metrics`` endpoint for processes that serve no HTTP (``shoal worker``).

Runs execute in workers when a broker is configured, so their counters and histograms live
there. ``SHOAL_WORKER_METRICS_PORT`` starts this small threaded server on
``SHOAL_WORKER_METRICS_HOST``; ``SHOAL_METRICS_TOKEN`` protects it as it protects the API's.
"""

from __future__ import annotations

import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shoal.observability import metrics


def _handler(token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, b"not found\n", "text/plain")
                return
            scheme, _, value = (self.headers.get("authorization") or "").partition(" ")
            if token and not (
                scheme.lower() == "bearer"
                and hmac.compare_digest(value.strip().encode(), token.encode())
            ):
                self._send(
                    401, b"Authorization: Bearer <SHOAL_METRICS_TOKEN> needed\n", "text/plain"
                )
                return
            body, content_type = metrics.render()
            self._send(200, body, content_type)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return Handler


class MetricsServer:
    def __init__(self, host: str, port: int, *, token: str | None) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(token))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
