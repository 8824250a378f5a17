"""A loopback HTTP server that speaks the part of Stripe's API we call.

`FakeStripe` answers, as Stripe's API reference documents them:
- `POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`;
- `POST /v1/checkout/sessions/{id}/expire` (only an `open` session can be expired);
- `GET /v1/invoices/{id}` (with its `hosted_invoice_url`, the invoice's own payment page);
- `GET /v1/invoice_payments` (by `invoice`, or by `payment[type]=payment_intent` and
  `payment[payment_intent]`): the invoice <-> payment intent link that API versions from
  2025-03-31.basil leave out of invoices and payment intents;

with form-encoded requests with bracketed nested keys
(`line_items[0][price_data][currency]=usd`), the secret key as a bearer token or as the user of
HTTP basic auth, `Idempotency-Key` replays, JSON `checkout.session` objects, and Stripe's error
shape (`{"error": {"type", "code", "message", "param"}}`) with its status codes.

Tests drive what Stripe would do on its side with `pay()` (the customer paid on Checkout),
`expire()`, `add_invoice()` (an invoice and its default payment) and `pay_invoice()` (the
customer paid on the hosted invoice page), and read every request
received in `requests`.

Use the `stripe_server` fixture (import it into your conftest:
`from tests.support.stripe_server import stripe_server  # noqa: F401`); it points
`STRIPE_API_BASE` at the server and clears the `get_settings` cache.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

_SESSION_PATH = re.compile(r"^/v1/checkout/sessions/(?P<id>[^/]+)$")
_EXPIRE_PATH = re.compile(r"^/v1/checkout/sessions/(?P<id>[^/]+)/expire$")
_INVOICE_PATH = re.compile(r"^/v1/invoices/(?P<id>[^/]+)$")
_INVOICE_PAYMENTS_PATH = "/v1/invoice_payments"
_KEY_PART = re.compile(r"\[([^\]]*)\]")
_CHECKOUT_LIFETIME_SECONDS = 24 * 3600


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]


@dataclass
class FakeStripe:
    """Stripe's Checkout Sessions API for one account, identified by its secret key."""

    secret_key: str
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_payments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[ReceivedRequest] = field(default_factory=list)
    # Runs on the server's thread after a request is received and before it is answered: what
    # happens elsewhere while our code waits for Stripe (a webhook landing, another writer).
    while_answering: Callable[[ReceivedRequest], None] | None = None
    _idempotent: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._dispatch(self, "GET")

            def do_POST(self) -> None:
                fake._dispatch(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- what happens on Stripe's side -----------------------------------------------------------

    def pay(self, session_id: str) -> dict[str, Any]:
        """The customer completed payment on the Checkout page."""
        with self._lock:
            checkout = self.sessions[session_id]
            checkout.update(
                status="complete",
                payment_status="paid",
                payment_intent="pi_" + secrets.token_hex(12),
                url=None,
            )
            return dict(checkout)

    def expire(self, session_id: str) -> dict[str, Any]:
        """The session reached its `expires_at` (or was expired through the API)."""
        with self._lock:
            checkout = self.sessions[session_id]
            checkout.update(status="expired", url=None)
            return dict(checkout)

    def created_sessions(self) -> list[ReceivedRequest]:
        return [
            r for r in self.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"
        ]

    def add_invoice(self, invoice: dict[str, Any], *, payment_intent: str) -> dict[str, Any]:
        """An invoice on the account, paid (or to be paid) by `payment_intent` as its default
        invoice payment (`inpay_…`, status `open` until the invoice is paid)."""
        with self._lock:
            stored = dict(invoice)
            stored.setdefault("status", "open")
            stored["hosted_invoice_url"] = f"{self.base_url}/i/{stored['id']}"
            self.invoices[stored["id"]] = stored
            payment = {
                "id": "inpay_" + secrets.token_hex(12),
                "object": "invoice_payment",
                "amount_paid": stored.get("amount_paid") or None,
                "amount_requested": stored.get("amount_due", 0),
                "created": int(time.time()),
                "currency": stored.get("currency", "usd"),
                "invoice": stored["id"],
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": payment_intent},
                "status": "paid" if stored.get("status") == "paid" else "open",
                "status_transitions": {"canceled_at": None, "paid_at": None},
            }
            self.invoice_payments.append(payment)
            return dict(payment)

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The customer paid the invoice itself (its hosted page, or Stripe's own retry)."""
        with self._lock:
            invoice = self.invoices[invoice_id]
            due = invoice.get("amount_remaining", invoice.get("amount_due", 0))
            invoice.update(
                status="paid", amount_paid=invoice.get("amount_paid", 0) + due, amount_remaining=0
            )
            for payment in self.invoice_payments:
                if payment["invoice"] == invoice_id and payment["is_default"]:
                    payment.update(status="paid", amount_paid=due)
            return dict(invoice)

    def set_invoice_status(self, invoice_id: str, status: str) -> None:
        """The merchant voided the invoice or marked it uncollectible in the Dashboard."""
        with self._lock:
            self.invoices[invoice_id]["status"] = status

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    # -- HTTP ----------------------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        query = urlsplit(handler.path).query
        params = decode_form(raw if method == "POST" else query)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        received = ReceivedRequest(method, path, headers, params)
        with self._lock:
            self.requests.append(received)
        if self.while_answering is not None:
            self.while_answering(received)

        if not self._authorized(headers.get("authorization", "")):
            message = self._bad_key_message()
            self._reply(handler, 401, _error("invalid_request_error", None, message))
            return
        if method == "POST" and path == "/v1/checkout/sessions":
            if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                self._reply(handler, 400, _error("invalid_request_error", None, "Invalid body"))
                return
            status, body, extra = self._create(params, headers.get("idempotency-key"))
            self._reply(handler, status, body, extra)
            return
        if method == "GET" and path == _INVOICE_PAYMENTS_PATH:
            status, body = self._list_invoice_payments(params)
            self._reply(handler, status, body)
            return
        expiring = _EXPIRE_PATH.match(path)
        if method == "POST" and expiring:
            status, body = self._expire(expiring["id"])
            self._reply(handler, status, body)
            return
        invoice_match = _INVOICE_PATH.match(path)
        if method == "GET" and invoice_match:
            with self._lock:
                invoice = self.invoices.get(invoice_match["id"])
                body = dict(invoice) if invoice else None
            if body is None:
                self._reply(handler, 404, _missing("invoice", invoice_match["id"]))
            else:
                self._reply(handler, 200, body)
            return
        match = _SESSION_PATH.match(path)
        if method == "GET" and match:
            with self._lock:
                checkout = self.sessions.get(match["id"])
                body = dict(checkout) if checkout else None
            if body is None:
                self._reply(
                    handler,
                    404,
                    _error(
                        "invalid_request_error",
                        "id",
                        f"No such checkout.session: '{match['id']}'",
                        code="resource_missing",
                    ),
                )
                return
            self._reply(handler, 200, body)
            return
        self._reply(
            handler,
            404,
            _error("invalid_request_error", None, f"Unrecognized request URL ({method}: {path})."),
        )

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value == self.secret_key
        if scheme.lower() == "basic":
            user, _, _password = base64.b64decode(value).decode().partition(":")
            return user == self.secret_key
        return False

    def _bad_key_message(self) -> str:
        return "Invalid API Key provided: " + self.secret_key[:8] + "*" * 8

    def _expire(self, session_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            checkout = self.sessions.get(session_id)
            if checkout is None:
                return 404, _missing("checkout.session", session_id)
            if checkout["status"] != "open":
                return 400, _error(
                    "invalid_request_error",
                    None,
                    f'Only Checkout Sessions with a status in ["open"] can be expired. This '
                    f'Checkout Session has a status of "{checkout["status"]}".',
                )
            checkout.update(status="expired", url=None)
            return 200, dict(checkout)

    def _list_invoice_payments(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        payment = params.get("payment")
        if payment is not None and (
            not isinstance(payment, dict) or payment.get("type") != "payment_intent"
        ):
            return 400, _error(
                "invalid_request_error",
                "payment[type]",
                "Missing required param: payment[type].",
                code="parameter_missing",
            )
        limit = int(params.get("limit", 10))
        with self._lock:
            found = [
                dict(p)
                for p in self.invoice_payments
                if ("invoice" not in params or p["invoice"] == params["invoice"])
                and (
                    payment is None
                    or p["payment"].get("payment_intent") == payment.get("payment_intent")
                )
            ]
        return 200, {
            "object": "list",
            "url": _INVOICE_PAYMENTS_PATH,
            "has_more": len(found) > limit,
            "data": found[:limit],
        }

    def _create(
        self, params: dict[str, Any], idempotency_key: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            if idempotency_key and idempotency_key in self._idempotent:
                previous_params, status, body = self._idempotent[idempotency_key]
                if previous_params != params:
                    return (
                        400,
                        _error(
                            "idempotency_error",
                            None,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        ),
                        {},
                    )
                return status, body, {"Idempotent-Replayed": "true"}
            status, body = self._new_session(params)
            if idempotency_key:
                self._idempotent[idempotency_key] = (params, status, body)
            return status, body, {}

    def _new_session(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problem = _invalid_create_params(params)
        if problem is not None:
            return 400, problem
        now = int(time.time())
        session_id = "cs_test_" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
        items = params.get("line_items", [])
        total = sum(
            int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1)) for item in items
        )
        checkout: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": items[0]["price_data"]["currency"].lower() if items else None,
            "customer": params.get("customer"),
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": int(params.get("expires_at", now + _CHECKOUT_LIFETIME_SECONDS)),
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": params.get("metadata", {}),
            "mode": params["mode"],
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "ui_mode": "hosted",
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        self.sessions[session_id] = checkout
        return 200, dict(checkout)

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(8))
        for name, value in (extra_headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def _error(
    kind: str, param: str | None, message: str, *, code: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    return {"error": error}


def _missing(kind: str, object_id: str) -> dict[str, Any]:
    return _error(
        "invalid_request_error", "id", f"No such {kind}: '{object_id}'", code="resource_missing"
    )


def _invalid_create_params(params: dict[str, Any]) -> dict[str, Any] | None:
    """The checks Stripe makes on a hosted, one-off payment session (an error body, or None)."""
    mode = params.get("mode")
    if mode not in {"payment", "setup", "subscription"}:
        return _error(
            "invalid_request_error",
            "mode",
            "Missing required param: mode.",
            code="parameter_missing",
        )
    if not params.get("success_url"):
        return _error(
            "invalid_request_error",
            "success_url",
            "Missing required param: success_url.",
            code="parameter_missing",
        )
    if params.get("customer") and params.get("customer_email"):
        return _error(
            "invalid_request_error",
            "customer_email",
            "You may only specify one of these parameters: customer, customer_email.",
        )
    items = params.get("line_items")
    if mode == "payment" and not items:
        return _error(
            "invalid_request_error",
            "line_items",
            "`line_items` is required in `payment` mode.",
            code="parameter_missing",
        )
    for index, item in enumerate(items or []):
        price = item.get("price_data") or {}
        if not price.get("currency") or not re.fullmatch(r"[a-z]{3}", price["currency"]):
            return _error(
                "invalid_request_error",
                f"line_items[{index}][price_data][currency]",
                "Invalid currency.",
            )
        if not str(price.get("unit_amount", "")).isdigit():
            return _error(
                "invalid_request_error",
                f"line_items[{index}][price_data][unit_amount]",
                "Invalid integer.",
            )
        if not (price.get("product_data") or {}).get("name") and not price.get("product"):
            return _error(
                "invalid_request_error",
                f"line_items[{index}][price_data][product_data][name]",
                "Missing required param: line_items[0][price_data][product_data][name].",
                code="parameter_missing",
            )
    return None


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: `a[0][b]=1` → {"a": [{"b": "1"}]}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for part, following in itertools.pairwise(parts):
            container: dict[str, Any] | list[Any] = [] if following.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None:
                    node[index] = container
                node = node[index]
            else:
                node = node.setdefault(part, container)
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            while len(node) <= index:
                node.append(None)
            node[index] = value
        else:
            node[last] = value
    return root


@pytest.fixture
def stripe_server() -> Iterator[FakeStripe]:
    """A fake Stripe account (secret key `sk_test_…`) with `STRIPE_API_BASE` pointing at it."""
    from stealth_recovery.core.settings import get_settings

    fake = FakeStripe(secret_key="sk_test_" + secrets.token_hex(16)).start()
    previous = os.environ.get("STRIPE_API_BASE")
    os.environ["STRIPE_API_BASE"] = fake.base_url
    get_settings.cache_clear()
    try:
        yield fake
    finally:
        fake.stop()
        if previous is None:
            os.environ.pop("STRIPE_API_BASE", None)
        else:
            os.environ["STRIPE_API_BASE"] = previous
        get_settings.cache_clear()
