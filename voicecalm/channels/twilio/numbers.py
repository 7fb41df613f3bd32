"""`voicecalm twilio setup`: the webhooks a Twilio number needs to bring its calls to this server
(telephony.md §1.1), to print or to apply through Twilio's REST API (IncomingPhoneNumbers)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from voicecalm.channels.twilio.paths import STATUS_PATH, WEBHOOK_PATH
from voicecalm.voice.settings import TwilioMediaStreamsSettings

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
REST_TIMEOUT_SECS = 30.0
PASSWORD_PLACEHOLDER = "<password>"


class NumberSetupError(Exception):
    """The number could not be configured; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class NumberWebhooks:
    voice_url: str  # "A call comes in", HTTP POST
    status_callback: str  # "Call status changes", HTTP POST


def number_webhooks(settings: TwilioMediaStreamsSettings, *, reveal_password: bool = False) -> NumberWebhooks:
    """The URLs for `settings.server_url`. With basic auth the credentials go into the voice URL
    (Twilio sends them when the webhook answers 401); unless `reveal_password`, the password is a
    placeholder, for printing."""
    credentials = ""
    if settings.username is not None and settings.password is not None:
        password = quote(settings.password.get_secret_value(), safe="") if reveal_password else PASSWORD_PLACEHOLDER
        credentials = f"{quote(settings.username, safe='')}:{password}@"
    return NumberWebhooks(
        voice_url=f"https://{credentials}{settings.server_url}{WEBHOOK_PATH}",
        status_callback=f"https://{settings.server_url}{STATUS_PATH}",
    )


def apply_number_webhooks(
    settings: TwilioMediaStreamsSettings, phone_number: str, *, api_base_url: str | None = None
) -> str:
    """Point `phone_number` (E.164, a number of the settings' account) at this server; returns its
    PN sid. `api_base_url` replaces https://api.twilio.com (a fake Twilio in tests)."""
    if settings.account_sid is None:
        raise NumberSetupError("applying needs `account_sid` under twilio_media_streams in credentials.yml")
    client = Client(
        settings.account_sid,
        settings.auth_token.get_secret_value(),
        http_client=TwilioHttpClient(timeout=REST_TIMEOUT_SECS),
    )
    if api_base_url:
        client.api.base_url = api_base_url.rstrip("/")
    webhooks = number_webhooks(settings, reveal_password=True)
    try:
        numbers = client.incoming_phone_numbers.list(phone_number=phone_number, limit=1)
        if not numbers:
            raise NumberSetupError(f"{phone_number} is not a phone number of account {settings.account_sid}")
        number = numbers[0].update(
            voice_url=webhooks.voice_url,
            voice_method="POST",
            status_callback=webhooks.status_callback,
            status_callback_method="POST",
        )
    except TwilioRestException as error:
        raise NumberSetupError(f"Twilio refused: HTTP {error.status}, code {error.code}") from None
    except TwilioException as error:  # a list page that was refused: the response is in the arguments
        raise NumberSetupError(f"Twilio refused: {_page_refusal(error)}") from None
    except requests.RequestException as error:
        raise NumberSetupError(f"could not reach Twilio at {client.api.base_url}: {type(error).__name__}") from None
    return str(number.sid)


def _page_refusal(error: TwilioException) -> str:
    response = error.args[1] if len(error.args) > 1 else None
    status = getattr(response, "status_code", None)
    try:
        code = json.loads(response.text).get("code")  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        code = None
    return f"HTTP {status}, code {code}" if status is not None else str(error)
