"""`voicecalm twilio setup`: the number's webhooks printed, or applied through the twilio package
to the fake Twilio REST API on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from tests.channels.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_HOST
from tests.dialogue.conftest import BANK
from voicecalm.cli import app as cli
from voicecalm.testing.twilio_fakes import FakeTwilioRest

NUMBER = "+15550009999"
VOICE_URL = f"https://{PUBLIC_HOST}/webhooks/twilio_media_streams/webhook"
STATUS_URL = f"https://{PUBLIC_HOST}/webhooks/twilio_media_streams/status"


def project_with(root: Path, twilio: dict[str, Any] | None) -> Path:
    project = root / "bank"
    shutil.copytree(BANK, project)
    credentials: dict[str, Any] = {"rest": {}}
    if twilio is not None:
        credentials["twilio_media_streams"] = twilio
    (project / "credentials.yml").write_text(yaml.safe_dump(credentials))
    return project


def twilio_credentials(**overrides: Any) -> dict[str, Any]:
    return {"server_url": PUBLIC_HOST, "auth_token": AUTH_TOKEN, "account_sid": ACCOUNT_SID, **overrides}


async def setup(*args: str) -> Result:
    # In a thread: the fake Twilio answers from this test's event loop while the command blocks.
    return await asyncio.to_thread(CliRunner().invoke, cli, ["twilio", "setup", *args])


async def test_setup_prints_the_webhooks_without_the_password(tmp_path: Path) -> None:
    project = project_with(tmp_path, twilio_credentials(username="twilio", password="s3cret"))

    result = await setup(str(project), "--number", NUMBER)

    assert result.exit_code == 0, result.output
    assert f"Webhook https://twilio:<password>@{PUBLIC_HOST}/webhooks/twilio_media_streams/webhook  HTTP POST" in result.output
    assert f"{STATUS_URL}  HTTP POST" in result.output
    assert NUMBER in result.output and "s3cret" not in result.output


async def test_apply_sets_the_number_webhooks_through_the_rest_api(tmp_path: Path) -> None:
    project = project_with(tmp_path, twilio_credentials(username="twilio", password="s3/cret"))
    rest = FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN)
    ours, other = rest.add_number(NUMBER), rest.add_number("+15550001234")
    async with rest.running():
        result = await setup(str(project), "--apply", "--number", NUMBER, "--api-base-url", rest.base_url)

    assert result.exit_code == 0, result.output
    assert ours in result.output
    assert {key: rest.numbers[ours][key] for key in ("voice_url", "voice_method", "status_callback", "status_callback_method")} == {
        "voice_url": f"https://twilio:s3%2Fcret@{PUBLIC_HOST}/webhooks/twilio_media_streams/webhook",
        "voice_method": "POST",
        "status_callback": STATUS_URL,
        "status_callback_method": "POST",
    }
    assert rest.numbers[other]["voice_url"] is None


@pytest.mark.parametrize(
    ("credentials", "number", "message"),
    [
        (twilio_credentials(), "+15550000000", f"+15550000000 is not a phone number of account {ACCOUNT_SID}"),
        (twilio_credentials(auth_token="f" * 32), NUMBER, "Twilio refused: HTTP 401, code 20003"),
        (twilio_credentials(account_sid=None), NUMBER, "applying needs `account_sid`"),
    ],
    ids=["unknown number", "wrong auth token", "no account"],
)
async def test_apply_fails_with_one_clear_line(
    tmp_path: Path, credentials: dict[str, Any], number: str, message: str
) -> None:
    project = project_with(tmp_path, {key: value for key, value in credentials.items() if value is not None})
    rest = FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN)
    sid = rest.add_number(NUMBER)
    async with rest.running():
        result = await setup(str(project), "--apply", "--number", number, "--api-base-url", rest.base_url)

    assert result.exit_code == 1
    assert f"cannot configure {number}: {message}" in result.output
    assert "Traceback" not in result.output
    assert rest.numbers[sid]["voice_url"] is None


async def test_setup_needs_the_channel_in_credentials_yml(tmp_path: Path) -> None:
    result = await setup(str(project_with(tmp_path, None)))

    assert result.exit_code == 1
    assert "credentials.yml has no twilio_media_streams section" in result.output


def test_setting_up_a_number_does_not_load_the_voice_pipeline() -> None:
    # `voicecalm twilio setup` only talks to Twilio's REST API; pipecat takes seconds to import.
    check = "import sys, voicecalm.cli, voicecalm.channels.twilio.numbers; print('pipecat' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
