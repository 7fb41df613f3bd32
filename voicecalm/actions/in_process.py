"""Run rasa-sdk actions inside the voicecalm process (`action_endpoint: {actions_module: ...}`)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys

from pydantic import ValidationError
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException

from voicecalm.actions.request import action_request, domain_dict, domain_digest
from voicecalm.actions.runner import ActionFailed, ActionRejected, ActionResult
from voicecalm.actions.response import parse_action_response
from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation

logger = logging.getLogger(__name__)


class InProcessActions:
    """Imports the actions package once and runs its actions with rasa-sdk's own executor."""

    def __init__(self, module: str, project: Project) -> None:
        # The project folder is where a Rasa project keeps its `actions` package.
        if str(project.root) not in sys.path:
            sys.path.insert(0, str(project.root))
        try:
            package = importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"cannot import actions module '{module}': {error}") from error
        self.executor = ActionExecutor()
        self.executor.register_package(package)
        self.domain = domain_dict(project)
        self.digest = domain_digest(self.domain)

    def _is_sync(self, action_name: str) -> bool:
        action = self.executor.actions.get(action_name)
        run = getattr(getattr(action, "__self__", None), "run", None)
        return run is not None and not inspect.iscoroutinefunction(run)

    async def run(self, action_name: str, conversation: Conversation) -> ActionResult:
        request = action_request(action_name, conversation, self.domain, self.digest)
        try:
            if self._is_sync(action_name):
                # A blocking `run()` gets a thread (and a loop) of its own, never the server's loop.
                result = await asyncio.to_thread(asyncio.run, self.executor.run(request))
            else:
                result = await self.executor.run(request)
        except ActionExecutionRejection as rejection:
            raise ActionRejected(str(rejection)) from rejection
        except ActionNotFoundException as error:
            raise ActionFailed("not_found", 404, str(error)) from error
        except Exception as error:
            logger.exception("action %s raised", action_name)
            raise ActionFailed("exception", None, type(error).__name__) from error
        try:
            return parse_action_response(dict(result or {}))
        except ValidationError as error:
            raise ActionFailed("invalid_response", None, str(error)) from error



