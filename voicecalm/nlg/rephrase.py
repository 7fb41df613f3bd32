"""Language-model text for responses: rephrasing (endpoints.yml `nlg: {type: rephrase}`) and the
free-form chitchat reply.

Both take a `Complete` callable (`prompt -> completion`, raising on failure) that the assistant
builds from `understanding.llm.complete`; this package never talks to a model itself. Whatever
goes wrong (an error, a timeout, an empty completion), the result is the original text (rephrasing)
or None (chitchat, and the caller falls back to the response as written). The model only ever
produces text: it cannot run actions or set slots.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

logger = logging.getLogger(__name__)

Complete = Callable[[str], Awaitable[str]]
History = Sequence[tuple[str, str]]  # ("user" | "bot", text), oldest first

REPHRASE_TIMEOUT_SECONDS = 2.0
CHITCHAT_TIMEOUT_SECONDS = 5.0

# Variables: history, current_input, suggested_response (as Rasa's rephrase prompt).
DEFAULT_REPHRASE_PROMPT = """The following is a conversation with a friendly, helpful assistant.
Rephrase the suggested assistant response so that it fits the conversation, staying close to the original and keeping its meaning and every fact, name and number in it. Use simple, natural English, one or two short sentences. Reply with the rephrased response only.

Conversation so far:
{{ history }}

{{ current_input }}

Suggested assistant response: {{ suggested_response }}

Rephrased assistant response:"""

CHITCHAT_PROMPT = """You are the friendly voice assistant of a customer-service line. The caller said something that is small talk or off topic.
Reply in one short, friendly sentence that sounds natural when spoken. Do not promise to do anything, do not state facts about accounts, prices or policies, and do not ask for personal details. If it fits, offer to help with what the assistant can do.
{{ conversation }}
Caller: {{ message }}
Assistant:"""

_jinja = SandboxedEnvironment(autoescape=False)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def format_history(history: History) -> str:
    return "\n".join(f"{'USER' if speaker == 'user' else 'AI'}: {text}" for speaker, text in history)


def clean_completion(text: str, max_sentences: int = 2, max_chars: int = 300) -> str | None:
    """A completion as one short speakable text: prefixes, quotes and markdown removed, cut at
    sentence ends; None when nothing is left."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = re.sub(r"^(?:ai|assistant|bot|rephrased[^:]*)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"[*_`#]+", "", text)
    text = re.sub(r"\s+", " ", text).strip().strip('"').strip()
    if not text:
        return None
    sentences = [s for s in _SENTENCE_END.split(text) if s][:max_sentences]
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}"
    return out[:max_chars].strip()


async def _ask(complete: Complete, prompt: str, timeout: float, what: str) -> str | None:
    try:
        return await asyncio.wait_for(complete(prompt), timeout)
    except Exception as error:  # LlmError, TimeoutError, a model that cannot start
        logger.warning("%s: no completion (%s: %s)", what, type(error).__name__, error)
        return None


class LlmRephraser:
    """Rephrases responses with `metadata.rephrase: true` (every response but those with
    `rephrase: false` when `rephrase_all`), using the recent conversation. A response's
    `metadata.rephrase_prompt` replaces the prompt (Jinja: `history`, `current_input`,
    `suggested_response`)."""

    def __init__(
        self,
        complete: Complete,
        *,
        rephrase_all: bool = False,
        prompt: str | None = None,
        timeout: float = REPHRASE_TIMEOUT_SECONDS,
        max_history: int = 5,
    ) -> None:
        self.complete = complete
        self.rephrase_all = rephrase_all
        self.prompt = prompt or DEFAULT_REPHRASE_PROMPT
        self.timeout = timeout
        self.max_history = max_history

    def wants(self, metadata: Mapping[str, Any]) -> bool:
        flag = metadata.get("rephrase")
        return flag is not False if self.rephrase_all else flag is True

    def prompt_for(self, text: str, metadata: Mapping[str, Any], history: History) -> str:
        recent = list(history)[-self.max_history :] if self.max_history else []
        current = next((t for speaker, t in reversed(recent) if speaker == "user"), "")
        source = metadata.get("rephrase_prompt") or self.prompt
        return _jinja.from_string(source).render(
            history=format_history(recent), current_input=f"USER: {current}" if current else "", suggested_response=text
        )

    async def rephrase(self, text: str, metadata: Mapping[str, Any], history: History = ()) -> str:
        try:
            prompt = self.prompt_for(text, metadata, history)
        except Exception as error:  # a broken rephrase_prompt template
            logger.warning("rephrase prompt could not be rendered (%s); sending the response as written", error)
            return text
        completion = await _ask(self.complete, prompt, self.timeout, "rephrasing")
        cleaned = clean_completion(completion, max_sentences=3, max_chars=max(300, 2 * len(text))) if completion else None
        return cleaned or text


class LlmChitchatResponder:
    """A short free-form reply to small talk (`action_trigger_chitchat`); None on any failure."""

    def __init__(
        self,
        complete: Complete,
        *,
        prompt: str | None = None,
        timeout: float = CHITCHAT_TIMEOUT_SECONDS,
        max_history: int = 4,
    ) -> None:
        self.complete = complete
        self.prompt = prompt or CHITCHAT_PROMPT
        self.timeout = timeout
        self.max_history = max_history

    async def respond(self, message: str, history: History = ()) -> str | None:
        recent = list(history)[-self.max_history :] if self.max_history else []
        conversation = f"\nConversation so far:\n{format_history(recent)}\n" if recent else ""
        prompt = _jinja.from_string(self.prompt).render(conversation=conversation, message=message)
        completion = await _ask(self.complete, prompt, self.timeout, "chitchat")
        return clean_completion(completion) if completion else None
