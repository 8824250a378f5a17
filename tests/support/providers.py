"""A loopback HTTP server speaking Twilio's Messages API and the Graph API messages endpoint.

It checks what the real services check (as their documentation describes) and answers the way
they answer:

- Twilio: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth with the
  account SID and auth token, a form body with To (E.164), From (our number), Body (≤ 1600
  characters) and an optional StatusCallback URL; `201` with the Message resource (`sid`
  "SM" + 32 hex, `status` "queued"), errors as `{"code", "message", "more_info", "status"}`.
- WhatsApp Cloud API: `POST /{version}/{phone-number-id}/messages`, `Authorization: Bearer`,
  a JSON body with `messaging_product: "whatsapp"`, `to`, `type: "template"` and a template
  (name, language code, body parameters); `200` with `messages[0].id` ("wamid."...), errors
  as `{"error": {"message", "type", "code", "fbtrace_id"}}`.

Replies can be scripted per provider (`script("twilio", 429, ...)`), consumed in order before
the normal behaviour resumes, or per recipient (`refuse("twilio", "+1415...", 400, 21610)`), as
the providers answer for a number that cannot receive, every time. `early_status(...)` makes
the server post a signed delivery-status callback for a new message before it answers the
send (Twilio to the message's StatusCallback, Meta to `whatsapp_webhook_url`), the race both
providers allow. Also signs
delivery-status callbacks the way Twilio and Meta do, written here from their documentation
independently of the service's verification code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from sqlalchemy import Engine

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
GRAPH_PATH = re.compile(r"^/v\d+\.\d+/(?P<phone_id>[^/]+)/messages$")


@dataclass
class ReceivedRequest:
    provider: str  # "twilio" or "whatsapp"
    path: str
    headers: dict[str, str]
    form: dict[str, str]  # Twilio's form fields (single values)
    json: dict[str, Any]  # WhatsApp's JSON body
    status: int  # what the server answered
    message_id: str | None  # the sid / wamid it handed out on success


@dataclass
class ScriptedReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeProviders:
    """Twilio and the WhatsApp Cloud API on 127.0.0.1:<ephemeral>, in a background thread."""

    twilio_account_sid: str = "AC" + "0123456789abcdef" * 2
    twilio_auth_token: str = "twilio-test-auth-token"
    twilio_from_number: str = "+15005550006"
    whatsapp_token: str = "EAAG-test-access-token"
    whatsapp_phone_number_id: str = "106540352242922"
    whatsapp_app_secret: str = "whatsapp-test-app-secret"
    whatsapp_webhook_url: str | None = None  # the app's webhook, for early statuses
    latency: float = 0.0  # seconds before each answer
    host: str = "127.0.0.1"
    port: int = 0
    _requests: list[ReceivedRequest] = field(default_factory=list)
    _scripts: dict[str, deque[ScriptedReply]] = field(
        default_factory=lambda: {"twilio": deque(), "whatsapp": deque()}
    )
    _refusals: dict[tuple[str, str], ScriptedReply] = field(default_factory=dict)
    _early: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (provider, message id, our webhook's HTTP status, its JSON answer) per early callback
    callbacks: list[tuple[str, str, int, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v21.0"

    # --- scripting and inspection ----------------------------------------------------------
    def script(
        self,
        provider: str,
        status: int,
        *,
        code: int | None = None,
        message: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue one reply for the provider's next request, in its documented error format."""
        if provider == "twilio":
            body = _twilio_error(status, code or 20500, message or HTTPStatus(status).phrase)
        else:
            body = _graph_error(code or 131000, message or HTTPStatus(status).phrase)
        with self._lock:
            self._scripts[provider].append(ScriptedReply(status, body, headers or {}))

    def refuse(self, provider: str, recipient: str, status: int, code: int, message: str) -> None:
        """Answer every send to `recipient` (E.164) with this error, in the documented format."""
        if provider == "twilio":
            body = _twilio_error(status, code, message)
        else:
            body = _graph_error(code, message)
        with self._lock:
            self._refusals[(provider, recipient.lstrip("+"))] = ScriptedReply(status, body)

    def early_status(self, provider: str, recipient: str, **status: Any) -> None:
        """Before answering a send to `recipient`, post this status for the new message.

        Twilio: form fields (`MessageStatus="failed", ErrorCode="30006"`); WhatsApp: the
        status object's fields (`status="failed", errors=[{"code": 131026, ...}]`).
        """
        with self._lock:
            self._early[(provider, recipient.lstrip("+"))] = status

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, provider: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.provider == provider]

    def accepted(self, provider: str) -> list[ReceivedRequest]:
        """The requests the provider took (and would deliver)."""
        return [r for r in self.requests_to(provider) if r.message_id is not None]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeProviders:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-providers",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------
    def _early_status(self, provider: str, recipient: str) -> dict[str, Any] | None:
        with self._lock:
            return self._early.get((provider, recipient.lstrip("+")))

    def _post_callback(
        self, provider: str, message_id: str, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read().decode(errors="replace")
        with self._lock:
            self.callbacks.append((provider, message_id, status, answer))

    def _refusal(self, provider: str, recipient: str) -> ScriptedReply | None:
        with self._lock:
            return self._refusals.get((provider, recipient.lstrip("+")))

    def _next_script(self, provider: str) -> ScriptedReply | None:
        with self._lock:
            queue = self._scripts[provider]
            return queue.popleft() if queue else None

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _graph_error(code: int, message: str, kind: str = "OAuthException") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": secrets.token_urlsafe(16),
        }
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProviders
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs allow

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.fake.latency > 0:
            time.sleep(self.fake.latency)
        if match := TWILIO_PATH.match(self.path):
            self._twilio(match["sid"], raw)
        elif match := GRAPH_PATH.match(self.path):
            self._graph(match["phone_id"], raw)
        else:
            self._answer(404, {"message": f"no route for {self.path}"})

    # Twilio --------------------------------------------------------------------------------
    def _twilio(self, sid: str, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        status, body, headers, message_id = self._twilio_reply(sid, form)
        self._record("twilio", form=form, status=status, message_id=message_id)
        self._answer(status, body, headers)

    def _twilio_reply(
        self, sid: str, form: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str], str | None]:
        fake = self.fake
        if self._basic_auth() != (fake.twilio_account_sid, fake.twilio_auth_token):
            return 401, _twilio_error(401, 20003, "Authenticate"), {}, None
        if sid != fake.twilio_account_sid:
            return 404, _twilio_error(404, 20404, "The requested resource was not found"), {}, None
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, _twilio_error(400, 20001, "expected a form body"), {}, None
        to, sender, text = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return 400, _twilio_error(400, 21604, "A 'To' phone number is required."), {}, None
        if not E164.match(to):
            message = f"The 'To' number {to} is not a valid phone number."
            return 400, _twilio_error(400, 21211, message), {}, None
        if sender != fake.twilio_from_number:
            message = (
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID."
            )
            return 400, _twilio_error(400, 21212, message), {}, None
        if not text:
            return 400, _twilio_error(400, 21602, "Message body is required."), {}, None
        if len(text) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return 400, _twilio_error(400, 21617, message), {}, None
        if refused := fake._refusal("twilio", to):
            return refused.status, refused.body, refused.headers, None
        if scripted := fake._next_script("twilio"):
            return scripted.status, scripted.body, scripted.headers, None
        message_sid = "SM" + secrets.token_hex(16)
        resource = {
            "account_sid": sid,
            "api_version": "2010-04-01",
            "body": text,
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "num_segments": "1",
            "price": None,
            "sid": message_sid,
            "status": "queued",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
        }
        early = fake._early_status("twilio", to)
        if early is not None and form.get("StatusCallback"):
            callback = {
                "AccountSid": sid,
                "ApiVersion": "2010-04-01",
                "From": sender,
                "To": to,
                "MessageSid": message_sid,
                "SmsSid": message_sid,
                **early,
            }
            url = form["StatusCallback"]
            fake._post_callback(
                "twilio",
                message_sid,
                url,
                urlencode(callback).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": twilio_signature(url, callback, fake.twilio_auth_token),
                },
            )
        return 201, resource, {}, message_sid

    def _basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    # WhatsApp Cloud API --------------------------------------------------------------------
    def _graph(self, phone_id: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {}
        status, body, headers, message_id = self._graph_reply(phone_id, payload)
        self._record("whatsapp", json_body=payload, status=status, message_id=message_id)
        self._answer(status, body, headers)

    def _graph_reply(
        self, phone_id: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str], str | None]:
        fake = self.fake
        if self.headers.get("Authorization") != f"Bearer {fake.whatsapp_token}":
            message = "Invalid OAuth access token - Cannot parse access token"
            return 401, _graph_error(190, message), {}, None
        if phone_id != fake.whatsapp_phone_number_id:
            message = (
                f"Unsupported post request. Object with ID '{phone_id}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation."
            )
            return 400, _graph_error(100, message, "GraphMethodException"), {}, None
        problem = _template_problem(payload)
        if problem is not None:
            return 400, _graph_error(100, f"(#100) {problem}"), {}, None
        if refused := fake._refusal("whatsapp", payload["to"]):
            return refused.status, refused.body, refused.headers, None
        if scripted := fake._next_script("whatsapp"):
            return scripted.status, scripted.body, scripted.headers, None
        message_id = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        body = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"].lstrip("+")}],
            "messages": [{"id": message_id, "message_status": "accepted"}],
        }
        early = fake._early_status("whatsapp", payload["to"])
        if early is not None and fake.whatsapp_webhook_url:
            statuses = whatsapp_status_payload(
                {
                    "id": message_id,
                    "recipient_id": payload["to"].lstrip("+"),
                    "timestamp": str(int(time.time())),
                    **early,
                },
                phone_id=phone_id,
            )
            notification = json.dumps(statuses).encode()
            fake._post_callback(
                "whatsapp",
                message_id,
                fake.whatsapp_webhook_url,
                notification,
                {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": meta_signature(notification, fake.whatsapp_app_secret),
                },
            )
        return 200, body, {}, message_id

    # shared --------------------------------------------------------------------------------
    def _record(
        self,
        provider: str,
        *,
        status: int,
        message_id: str | None,
        form: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> None:
        self.fake._record(
            ReceivedRequest(
                provider=provider,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                form=form or {},
                json=json_body or {},
                status=status,
                message_id=message_id,
            )
        )

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def whatsapp_status_payload(
    *statuses: dict[str, Any],
    phone_id: str = "106540352242922",
    display_phone_number: str | None = None,
) -> dict[str, Any]:
    """A WhatsApp Business Account webhook carrying message statuses, as Meta posts it."""
    metadata = {"phone_number_id": phone_id}
    if display_phone_number is not None:
        metadata = {"display_phone_number": display_phone_number, **metadata}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": metadata,
                            "statuses": list(statuses),
                        },
                    }
                ],
            }
        ],
    }


def _template_problem(payload: dict[str, Any]) -> str | None:
    """What the Cloud API would refuse in a template message body, or None."""
    if payload.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    to = payload.get("to")
    if not isinstance(to, str) or not re.fullmatch(r"\+?[1-9]\d{6,14}", to):
        return "Invalid parameter: to"
    if payload.get("type") != "template":
        return "Business-initiated messages must use type template"
    template = payload.get("template")
    if not isinstance(template, dict) or not template.get("name"):
        return "The parameter template['name'] is required."
    language = template.get("language")
    if not isinstance(language, dict) or not language.get("code"):
        return "The parameter template['language']['code'] is required."
    for component in template.get("components") or []:
        for parameter in component.get("parameters") or []:
            if parameter.get("type") == "text" and not parameter.get("text"):
                return "Parameter text is empty"
    return None


# --- signing status callbacks, as the providers document it -------------------------------
def twilio_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + each key+value sorted by key))."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def meta_signature(body: bytes, app_secret: str) -> str:
    """X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256(app secret, raw body)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def fake_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    """A running fake; TWILIO_* and WHATSAPP_* settings point at it for this test."""
    from stealth_recovery.core.settings import get_settings

    with FakeProviders() as fake:
        environment = {
            "TWILIO_ACCOUNT_SID": fake.twilio_account_sid,
            "TWILIO_AUTH_TOKEN": fake.twilio_auth_token,
            "TWILIO_FROM_NUMBER": fake.twilio_from_number,
            "TWILIO_API_BASE": fake.url,
            "WHATSAPP_API_KEY": fake.whatsapp_token,
            "WHATSAPP_BUSINESS_NUMBER": fake.whatsapp_phone_number_id,
            "WHATSAPP_API_BASE": fake.graph_url,
            "WHATSAPP_APP_SECRET": fake.whatsapp_app_secret,
            "WHATSAPP_VERIFY_TOKEN": "whatsapp-test-verify-token",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            yield fake
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()


@pytest.fixture
def live_webhooks(
    engine: Engine,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The app served on loopback as the providers' callback target: BASE_URL (Twilio's
    StatusCallback) and the WhatsApp webhook point at it; provider clients are rebuilt."""
    from stealth_recovery.core.settings import get_settings
    from stealth_recovery.retry.runtime import reset_runtime
    from tests.support.server import running_server

    with running_server() as url:
        monkeypatch.setenv("BASE_URL", url)
        monkeypatch.setenv("PROVIDER_RETRY_BACKOFF_SECONDS", "0")
        get_settings.cache_clear()
        fake_providers.whatsapp_webhook_url = f"{url}/v1/webhooks/whatsapp"
        reset_runtime()
        try:
            yield url
        finally:
            reset_runtime()
