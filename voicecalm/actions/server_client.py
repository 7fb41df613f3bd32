"""Run custom actions on an action server over HTTP (the rasa-sdk webhook protocol, actions.md)."""

from __future__ import annotations

import json
import logging
import os
import ssl
import zlib
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from voicecalm.actions.request import action_request, domain_dict, domain_digest
from voicecalm.actions.response import parse_action_response
from voicecalm.actions.runner import ActionFailed, ActionRejected, ActionResult
from voicecalm.project import Project
from voicecalm.project.schema import ActionEndpoint
from voicecalm.tracker.conversation import Conversation

logger = logging.getLogger(__name__)

DOMAIN_NEEDED = 449


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error", ""))[:200] if isinstance(body, dict) else ""


class ActionServerClient:
    """One pooled HTTP client per process. A request that may have reached the server is never
    sent again, except for the 449 answer, which says the server did not run the action."""

    def __init__(self, endpoint: ActionEndpoint, project: Project) -> None:
        if endpoint.url is None:
            raise ValueError("the action endpoint has no url")
        self.url = endpoint.url
        self.domain = domain_dict(project)
        self.digest = domain_digest(self.domain)
        self.compress = os.environ.get("COMPRESS_ACTION_SERVER_REQUEST", "").lower() == "true"
        params = {endpoint.token_name: endpoint.token} if endpoint.token else None
        auth = httpx.BasicAuth(endpoint.basic_auth.username, endpoint.basic_auth.password) if endpoint.basic_auth else None
        verify: ssl.SSLContext | bool = True
        if endpoint.cafile:
            verify = ssl.create_default_context(cafile=str(project.root / Path(endpoint.cafile)))
        self.client = httpx.AsyncClient(
            params=params,
            headers=dict(endpoint.headers),
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(endpoint.timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.compress:
            content = zlib.compress(content)
            headers["Content-Encoding"] = "deflate"
        try:
            return await self.client.post(self.url, content=content, headers=headers)
        except httpx.TimeoutException as error:
            raise ActionFailed("timeout", None, type(error).__name__) from error
        except httpx.HTTPError as error:
            raise ActionFailed("connection_error", None, type(error).__name__) from error

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        response = await self._post(action_request(action_name, conversation, None, self.digest))
        if response.status_code == DOMAIN_NEEDED:
            response = await self._post(action_request(action_name, conversation, self.domain, self.digest))
            if response.status_code == DOMAIN_NEEDED:
                raise ActionFailed("domain_not_accepted", DOMAIN_NEEDED, _error_text(response))
        if response.status_code == 400:
            logger.info("action %s rejected execution: %s", action_name, _error_text(response))
            raise ActionRejected(_error_text(response))
        if response.status_code != 200:
            kind = "not_found" if response.status_code == 404 else "http_error"
            logger.error("action %s failed with HTTP %d: %s", action_name, response.status_code, _error_text(response))
            raise ActionFailed(kind, response.status_code, _error_text(response))
        try:
            return parse_action_response(response.json())
        except (ValueError, ValidationError) as error:
            logger.error("action %s answered with an invalid body", action_name)
            raise ActionFailed("invalid_response", 200, type(error).__name__) from error
