"""Custom actions: the runner interface, in-process rasa-sdk actions and the action-server client."""

from __future__ import annotations

from voicecalm.actions.in_process import InProcessActions
from voicecalm.actions.runner import ActionFailed, ActionRejected, ActionResult, ActionRunner
from voicecalm.actions.server_client import ActionServerClient
from voicecalm.project import Project


def create_action_runner(project: Project) -> ActionRunner | None:
    """The runner `endpoints.yml` asks for: `actions_module` (in-process) wins over `url`."""
    endpoint = project.endpoints.action_endpoint
    if endpoint is None:
        return None
    if endpoint.actions_module:
        return InProcessActions(endpoint.actions_module, project)
    return ActionServerClient(endpoint, project)


__all__ = [
    "ActionFailed",
    "ActionRejected",
    "ActionResult",
    "ActionRunner",
    "ActionServerClient",
    "InProcessActions",
    "create_action_runner",
]
