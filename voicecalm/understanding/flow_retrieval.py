"""Which flows the prompt shows (commands.md §7): a shortlist by embedding similarity.

With no more startable flows than `num_flows`, every flow is shown and nothing is embedded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np

from voicecalm.dialogue import stack as stacks
from voicecalm.dialogue.cleanup import guard_allows
from voicecalm.project import Flow, Project
from voicecalm.project.schema import FlowRetrievalConfig
from voicecalm.tracker.conversation import Conversation
from voicecalm.tracker.events import FlowStarted, UserUttered
from voicecalm.understanding.prompt_slots import prompt_slots

if TYPE_CHECKING:
    from voicecalm.models.embedder import Embedder

logger = logging.getLogger(__name__)


def flow_document(flow: Flow, project: Project, with_slots: bool) -> str:
    lines = [f"{flow.name}: {' '.join((flow.description or '').split())}"]
    if with_slots:
        for slot in prompt_slots(flow, project):
            allowed = f", allowed values: {slot.allowed_values}" if slot.allowed_values else ""
            lines.append(f"{slot.name}: {slot.description}{allowed}")
    return "\n".join(lines)


class FlowRetrieval:
    def __init__(self, project: Project, config: FlowRetrievalConfig, embedder: Embedder | None) -> None:
        self.project = project
        self.config = config
        self.embedder = embedder
        # `if: False` flows are reached only by link or call: never offered.
        self.candidates = [flow for flow in project.user_flows if flow.guard is not False]
        self.needed = config.active and len(self.candidates) > config.num_flows and embedder is not None
        if config.active and len(self.candidates) > config.num_flows and embedder is None:
            logger.warning("flow retrieval has no embedding model: every prompt lists all %d flows", len(self.candidates))
        self._vectors: np.ndarray | None = None
        self._index_lock = asyncio.Lock()

    async def _index(self) -> np.ndarray:
        """Flow documents are embedded once, on first use."""
        async with self._index_lock:
            if self._vectors is None:
                assert self.embedder is not None
                documents = [flow_document(f, self.project, self.config.should_embed_slots) for f in self.candidates]
                self._vectors = await self.embedder.embed(documents)
            return self._vectors

    def _query(self, conversation: Conversation, message: str) -> str:
        earlier = [e.text for e in conversation.events_since_last_restart() if isinstance(e, UserUttered) and e.text]
        return "\n".join([*earlier[-(self.config.turns_to_embed - 1) :], message] if self.config.turns_to_embed > 1 else [message])

    async def shortlist(self, conversation: Conversation, message: str) -> list[Flow]:
        active = {frame["flow_id"] for frame in stacks.user_flows(conversation.stack)}
        chosen = self.candidates
        if self.needed:
            assert self.embedder is not None
            vectors = await self._index()
            query = (await self.embedder.embed([self._query(conversation, message)]))[0]
            best = np.argsort(-(vectors @ query))[: self.config.num_flows]
            started = {e.flow_id for e in conversation.events_since_last_restart() if isinstance(e, FlowStarted)}
            keep = {self.candidates[i].id for i in best} | started
            chosen = [f for f in self.candidates if f.id in keep or f.always_include_in_prompt]
        allowed = [f for f in chosen if f.id in active or guard_allows(self.project, f.id, conversation)]
        allowed += [f for f in self.project.user_flows if f.id in active and f not in allowed]
        # Flows that come and go (guards, active `if: False` flows) go last, so the prompt's
        # long stable beginning stays the same from turn to turn for a local model's cache.
        return sorted(allowed, key=lambda f: f.guard is not None)
