"""Who may talk to the Twilio routes (telephony.md §1.5): Twilio's request signatures, optional
basic auth on the webhook, and the one-time token that ties a media stream to its signed call.

Nothing here logs a token, a signature or the auth token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator, get_signature_algorithm

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

TOKEN_TTL_SECS = 60.0
_NONCE_BYTES = 16  # 128 random bits
_EXPIRY = struct.Struct(">Q")  # expiry in ms since the epoch: wall time, so any worker can check it
_MAC_BYTES = 32
_TOKEN_KEY_LABEL = b"voicecalm twilio media stream token v1"


def public_host(server_url: str) -> str:
    """`server_url` as configured ("bot.example.com", also accepted with a scheme or a trailing
    slash) reduced to the host[:port] Twilio calls."""
    host = server_url.strip()
    for scheme in ("https://", "http://", "wss://", "ws://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    return host.rstrip("/")


class TwilioSignatures:
    """Checks `X-Twilio-Signature` against URLs rebuilt from the configured public host, never
    from the request's Host header (which the caller controls)."""

    def __init__(self, auth_token: str, server_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self.host = public_host(server_url)

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://{self.host}{path}"

    def valid_post(self, path: str, form: Any, signature: str | None, settings_header: str | None) -> bool:
        """A form POST from Twilio; `form` is the multi-dict of the body's parameters."""
        if not signature:
            return False
        algorithm = get_signature_algorithm(settings_header)
        return bool(self._validator.validate(self.url(path), form, signature, algorithm))

    def websocket_scheme(self, path: str, signature: str | None, settings_header: str | None) -> str | None:
        """The URL scheme whose signature the upgrade request carries ("wss" or "https"), or None.
        Twilio's documentation names the wss:// form; the https:// form is accepted too, and the
        caller logs which one matched."""
        if not signature:
            return None
        algorithm = get_signature_algorithm(settings_header)
        for scheme in ("wss", "https"):
            if self._validator.validate(self.url(path, scheme), {}, signature, algorithm):
                return scheme
        return None


def basic_auth_ok(authorization: str | None, username: str, password: str) -> bool:
    """Whether an `Authorization: Basic ...` header names exactly these credentials."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, separator, given_password = given.partition(":")
    # Both compared, always, so the timing says nothing about which one was wrong.
    user_ok = hmac.compare_digest(given_user.encode(), username.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(separator) and user_ok and password_ok


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a signed webhook allowed: one media stream for this call. Its fields travel as
    `<Parameter>`s of the `<Stream>` and come back in `start.customParameters`."""

    call_sid: str
    user_phone: str | None = None
    bot_phone: str | None = None
    direction: str = "inbound"
    handoff_status: str | None = None

    def parameters(self) -> dict[str, str]:
        fields = {
            "call_id": self.call_sid,
            "user_phone": self.user_phone,
            "bot_phone": self.bot_phone,
            "direction": self.direction,
            "handoff_status": self.handoff_status,
        }
        return {name: value for name, value in fields.items() if value is not None}

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> StreamGrant:
        return cls(
            call_sid=parameters.get("call_id", ""),
            user_phone=parameters.get("user_phone"),
            bot_phone=parameters.get("bot_phone"),
            direction=parameters.get("direction", "inbound"),
            handoff_status=parameters.get("handoff_status"),
        )


class TokenRefused(Exception):
    """The stream's token does not open it; the message is safe to log."""


class StreamTokens:
    """One-time tokens for `<Stream>`: 128 random bits, bound by an HMAC to the grant (CallSid,
    caller, ...) of the signed webhook, valid `ttl` seconds, accepted once.

    The HMAC key is derived from the auth token, so every worker of `voicecalm run --workers`
    accepts a token any of them issued; the single use is enforced per worker process."""

    def __init__(self, auth_token: str, *, ttl: float = TOKEN_TTL_SECS, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(auth_token.encode("utf-8"), _TOKEN_KEY_LABEL, hashlib.sha256).digest()
        self._ttl = ttl
        self._clock = clock
        self._used: dict[bytes, float] = {}  # nonce → expiry, forgotten once expired

    def issue(self, grant: StreamGrant) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        expiry = _EXPIRY.pack(int((self._clock() + self._ttl) * 1000))
        raw = nonce + expiry + self._mac(nonce, expiry, grant)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def redeem(self, token: str | None, parameters: Mapping[str, str], call_sid: str) -> StreamGrant:
        """The grant a `start` message opens: its `token` and the other custom parameters must be
        exactly what was issued, for this `callSid`, in time, and not used before."""
        if not token:
            raise TokenRefused("no token parameter")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenRefused("malformed token") from None
        if len(raw) != _NONCE_BYTES + _EXPIRY.size + _MAC_BYTES:
            raise TokenRefused("malformed token")
        nonce, expiry, mac = raw[:_NONCE_BYTES], raw[_NONCE_BYTES : -_MAC_BYTES], raw[-_MAC_BYTES:]
        grant = StreamGrant.from_parameters({k: v for k, v in parameters.items() if k != "token"})
        if not hmac.compare_digest(mac, self._mac(nonce, expiry, grant)):
            raise TokenRefused("token does not match the stream parameters")
        if grant.call_sid != call_sid:
            raise TokenRefused("token was issued for another call")
        now = self._clock()
        expires_at = _EXPIRY.unpack(expiry)[0] / 1000
        if now > expires_at:
            raise TokenRefused("token expired")
        self._used = {used: until for used, until in self._used.items() if until >= now}
        if nonce in self._used:
            raise TokenRefused("token already used")
        self._used[nonce] = expires_at
        return grant

    def _mac(self, nonce: bytes, expiry: bytes, grant: StreamGrant) -> bytes:
        bound = json.dumps(grant.parameters(), sort_keys=True, ensure_ascii=True).encode("ascii")
        return hmac.new(self._key, nonce + expiry + bound, hashlib.sha256).digest()
