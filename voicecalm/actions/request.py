"""The action-server request body (actions.md §2-3): tracker state, domain and its digest."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rasa_sdk

from voicecalm.project import Project
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import ActionExecuted, SessionStarted


def domain_dict(project: Project) -> dict[str, Any]:
    """The merged domain in the shape of a domain YAML file."""
    domain = project.domain
    return {
        "version": "3.1",
        "intents": sorted(domain.intents),
        "entities": sorted(domain.entities),
        "slots": {
            name: slot.definition.model_dump(mode="json", exclude_none=True) for name, slot in domain.slots.items()
        },
        "responses": {
            name: [v.model_dump(mode="json", exclude_defaults=True) for v in response.variations]
            for name, response in domain.responses.items()
        },
        "actions": sorted(domain.actions),
        "forms": {},
        "session_config": domain.session_config.model_dump(mode="json"),
        "config": {"store_entities_as_slots": False},
    }


def domain_digest(domain: dict[str, Any]) -> str:
    """Stable across restarts: a hash of the domain's canonical JSON."""
    return hashlib.sha256(json.dumps(domain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tracker_state(conversation: Conversation) -> dict[str, Any]:
    events = conversation.event_dicts()
    latest = conversation.latest_message
    latest_message = {}
    if latest is not None:
        latest_message = {
            "text": latest.text,
            "intent": latest.parse_data.get("intent", {}),
            "entities": latest.parse_data.get("entities", []),
            "commands": latest.parse_data.get("commands", []),
            "metadata": dict(latest.metadata),
            "message_id": latest.message_id,
        }
    latest_action = next((e.action_name for e in reversed(conversation.events) if isinstance(e, ActionExecuted)), None)
    session_start = next((e for e in reversed(conversation.events) if isinstance(e, SessionStarted)), None)
    return {
        "sender_id": conversation.sender_id,
        "slots": dict(conversation.slots),
        "latest_message": latest_message,
        "latest_event_time": conversation.events[-1].timestamp if conversation.events else None,
        "followup_action": None,
        "paused": conversation.paused,
        "inactive": False,
        "terminated": False,
        "stack": [dict(frame) for frame in conversation.stack],
        "events": events,
        "latest_input_channel": latest.input_channel if latest else None,
        "active_loop": {},
        "latest_action": {"action_name": latest_action},
        "latest_action_name": latest_action,
        "user_id": conversation.sender_id,
        "conversation_started_timestamp": conversation.events[0].timestamp if conversation.events else None,
        "current_session_id": str(session_start.timestamp) if session_start else None,
    }


def action_request(action_name: str, conversation: Conversation, domain: dict[str, Any] | None, digest: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "next_action": action_name,
        "sender_id": conversation.sender_id,
        "version": rasa_sdk.__version__,
        "tracker": tracker_state(conversation),
        "domain_digest": digest,
    }
    if domain is not None:
        request["domain"] = domain
    return request
