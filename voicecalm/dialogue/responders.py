"""What the dialogue core asks of free-form responders, as small protocols.

The assistant injects implementations through `TurnServices`: the document search
(`voicecalm.knowledge.responder.KnowledgeResponder`), the chitchat responder and the rephraser
(`voicecalm.nlg.rephrase`). `dialogue/` imports none of them, nor any LLM code: a responder only
ever returns text, so what it says can never run an action or change a slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

History = Sequence[tuple[str, str]]  # ("user" | "bot", text), oldest first


class SearchResult(Protocol):
    @property
    def text(self) -> str | None: ...  # None: the documents hold no relevant answer

    @property
    def sources(self) -> list[dict[str, Any]]: ...  # [{"source", "heading", "score"}], best first


class KnowledgeResponder(Protocol):
    async def respond(
        self, question: str, history: History = (), on_part: Callable[[SearchResult], None] | None = None
    ) -> SearchResult:
        """The answer; with `on_part`, its text also comes in parts (sentences) as each is known."""
        ...


class ChitchatResponder(Protocol):
    async def respond(self, message: str, history: History = ()) -> str | None:
        """A short free-form reply, or None when none could be made (the caller falls back)."""
        ...


class Rephraser(Protocol):
    def wants(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a response with this variation metadata is to be rephrased."""
        ...

    async def rephrase(self, text: str, metadata: Mapping[str, Any], history: History = ()) -> str:
        """The rephrased text; the original text on any failure or timeout."""
        ...
