"""`stub_custom_actions`: canned replies that stand in for the action server (testing.md §1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from voicecalm.actions.response import parse_action_response
from voicecalm.actions.runner import ActionFailed, ActionResult, ActionRunner
from voicecalm.tracker.conversation import Conversation


class StubbedActions:
    """Answers stubbed actions from their canned body, checked exactly like a server reply;
    every other action goes to the project's own runner."""

    def __init__(self, stubs: Mapping[str, Mapping[str, Any]], actions: ActionRunner | None) -> None:
        self.stubs = stubs
        self.actions = actions

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        body = self.stubs.get(action_name)
        if body is not None:
            try:
                return parse_action_response(dict(body))
            except ValidationError as error:
                raise ActionFailed("invalid_response", None, str(error)) from error
        if self.actions is None:
            raise ActionFailed("no_action_endpoint", detail="no action endpoint is configured")
        return await self.actions.run(action_name, conversation)
