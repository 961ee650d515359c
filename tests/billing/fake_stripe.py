"""A small fake of the Stripe API (only the endpoints shoal calls), on 127.0.0.1.

The real ``stripe`` library talks to it over HTTP (``STRIPE_API_BASE``). It keeps customers,
checkout sessions and subscriptions in memory, records every request, can fail (``status``)
or hang (``hang``), and builds the events Stripe would send; :func:`sign` signs them the way
Stripe does (HMAC-SHA256 of ``"{t}.{body}"``), computed here without the library.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

MONTH = 30 * 86400


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    status: int | None = None  # answer every request with this error status
    hang: bool = False  # never answer (until closed)
    requests: list[Recorded] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeStripe:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    # -- HTTP -------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        path, _, query = handler.path.partition("?")
        form = dict(parse_qsl(body or query, keep_blank_values=True))
        self.requests.append(Recorded(method, path, form, dict(handler.headers.items())))
        if self.hang:
            self._release.wait(30)
            return
        if self.status is not None:
            self._send(handler, self.status, {"error": {"type": "api_error", "message": "down"}})
            return
        status, data = self._route(method, path, form)
        self._send(handler, status, data)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(raw)))
        handler.send_header("request-id", "req_fake")
        handler.end_headers()
        handler.wfile.write(raw)

    def _route(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path == "/v1/customers":
            customer_id = self.new_id("cus")
            customer: dict[str, Any] = {
                "id": customer_id,
                "object": "customer",
                "email": form.get("email"),
                "name": form.get("name"),
                "metadata": {"account_id": form.get("metadata[account_id]")},
            }
            self.customers[customer_id] = customer
            return 200, customer
        if method == "POST" and path == "/v1/checkout/sessions":
            session_id = self.new_id("cs_test")
            session = {
                "id": session_id,
                "object": "checkout.session",
                "mode": form.get("mode"),
                "status": "open",
                "customer": form.get("customer"),
                "client_reference_id": form.get("client_reference_id"),
                "metadata": _sub_dict(form, "metadata"),
                "subscription": None,
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "_price": form.get("line_items[0][price]"),
                "_subscription_metadata": _sub_dict(form, "subscription_data[metadata]"),
            }
            self.sessions[session_id] = session
            return 200, _public(session)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            portal_id = self.new_id("bps")
            return 200, {
                "id": portal_id,
                "object": "billing_portal.session",
                "customer": form.get("customer"),
                "return_url": form.get("return_url"),
                "url": f"https://billing.stripe.test/p/session/{portal_id}",
            }
        if method == "GET" and path.startswith("/v1/subscriptions/"):
            sub = self.subscriptions.get(path.rsplit("/", 1)[-1])
            if sub is None:
                return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
            return 200, sub
        return 404, {"error": {"type": "invalid_request_error", "message": f"no {path}"}}

    # -- what Stripe would send -------------------------------------------------------------------
    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def complete_checkout(self, session_id: str, *, created: int | None = None) -> dict[str, Any]:
        """Pay the checkout: an active subscription exists; returns the completed event."""
        session = self.sessions[session_id]
        now = int(time.time())
        sub_id = self.new_id("sub")
        self.subscriptions[sub_id] = {
            "id": sub_id,
            "object": "subscription",
            "customer": session["customer"],
            "status": "active",
            "cancel_at_period_end": False,
            "metadata": session["_subscription_metadata"],
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": self.new_id("si"),
                        "object": "subscription_item",
                        "price": {"id": session["_price"], "object": "price"},
                        "current_period_start": now - 3600,
                        "current_period_end": now - 3600 + MONTH,
                    }
                ],
            },
        }
        session.update(status="complete", subscription=sub_id)
        return self.event("checkout.session.completed", _public(session), created=created)

    def subscription_event(
        self, sub_id: str, kind: str, *, status: str, created: int | None = None
    ) -> dict[str, Any]:
        """Change the subscription's status and return the event announcing it."""
        sub = self.subscriptions[sub_id]
        sub["status"] = status
        return self.event(kind, json.loads(json.dumps(sub)), created=created)

    def event(
        self, kind: str, obj: dict[str, Any], *, created: int | None = None
    ) -> dict[str, Any]:
        return {
            "id": self.new_id("evt"),
            "object": "event",
            "type": kind,
            "created": int(time.time()) if created is None else created,
            "data": {"object": obj},
        }


def _sub_dict(form: dict[str, str], prefix: str) -> dict[str, str]:
    start = f"{prefix}["
    return {
        k[len(start) : -1]: v
        for k, v in form.items()
        if k.startswith(start) and "][" not in k[len(start) :]
    }


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}
