"""The one door to language models: every completion goes through litellm from here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicecalm.models.embedder import EmbeddingModelError, normalise
from voicecalm.project import Project
from voicecalm.project.schema import LlmConfig

logger = logging.getLogger(__name__)

# litellm fetches a price list from the internet at import unless told to use its local copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Added to the model's own timeout, so that a call can never hang a turn.
TIMEOUT_MARGIN_SECONDS = 1.0


class LlmError(Exception):
    """The model could not answer: an error, a timeout or an empty completion."""


@dataclass(frozen=True, slots=True)
class LlmSettings:
    model: str  # a litellm model string, e.g. "openai/gpt-4o-mini" or "ollama/qwen2.5"
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 7.0
    temperature: float | None = 0.0
    max_tokens: int = 256
    extra_body: dict[str, Any] = field(default_factory=dict)


def settings_from_config(config: LlmConfig, project: Project) -> LlmSettings:
    """Inline `llm:` keys, or a `model_group` from endpoints.yml (the group's first model)."""
    values = config.model_dump(exclude_none=True)
    group_id = values.pop("model_group", None)
    if group_id is not None:
        groups = {group.get("id"): group for group in project.endpoints.model_groups}
        if group_id not in groups or not groups[group_id].get("models"):
            raise ValueError(f"model group '{group_id}' is not defined in endpoints.yml `model_groups`")
        values = {**groups[group_id]["models"][0], **values}
    provider, model = values.get("provider"), values.get("model")
    if not model:
        raise ValueError("`llm:` needs a `model` (or a `model_group`)")
    if provider and not model.startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    return LlmSettings(
        model=model,
        api_base=values.get("api_base"),
        api_key=values.get("api_key"),
        timeout=float(values.get("timeout", 7)),
        temperature=values.get("temperature", 0.0),
        max_tokens=int(values.get("max_tokens") or values.get("max_completion_tokens") or 256),
        extra_body=dict(values.get("extra_body") or {}),
    )


def load_litellm() -> Any:
    """litellm, imported on first use (3–8 s: only processes that use a model pay for it), in a
    worker thread so the event loop keeps running meanwhile."""
    import litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner would fill our logs
    return litellm


def _request(settings: LlmSettings, prompt: str, grammar: str | None) -> dict[str, Any]:
    extra_body = dict(settings.extra_body)
    if grammar is not None:
        extra_body["grammar"] = grammar
    return {
        "model": settings.model,
        "messages": [{"role": "user", "content": prompt}],
        "api_base": settings.api_base,
        "api_key": settings.api_key,
        "timeout": settings.timeout,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "extra_body": extra_body or None,
        "num_retries": 0,
    }


async def complete(settings: LlmSettings, prompt: str, grammar: str | None = None) -> str:
    """One completion; raises `LlmError` on any failure, never waits past the timeout."""
    litellm = await asyncio.to_thread(load_litellm)
    try:
        response = await asyncio.wait_for(
            litellm.acompletion(**_request(settings, prompt, grammar)), settings.timeout + TIMEOUT_MARGIN_SECONDS
        )
    except Exception as error:  # litellm raises many types; each one means "no answer"
        raise LlmError(f"{type(error).__name__} from {settings.model}") from error
    content = response.choices[0].message.content if response.choices else None
    if not content or not content.strip():
        raise LlmError(f"empty completion from {settings.model}")
    return content


async def stream(settings: LlmSettings, prompt: str) -> AsyncIterator[str]:
    """One completion, piece by piece as the model writes it. Raises `LlmError` on any failure,
    and when the model stays silent for longer than its timeout (before the first piece, which
    includes reading the prompt, or between two pieces). Closing the iterator early closes the
    request, so the model stops writing."""
    litellm = await asyncio.to_thread(load_litellm)
    limit = settings.timeout + TIMEOUT_MARGIN_SECONDS
    try:
        response = await asyncio.wait_for(litellm.acompletion(**_request(settings, prompt, None), stream=True), limit)
    except Exception as error:
        raise LlmError(f"{type(error).__name__} from {settings.model}") from error
    pieces = aiter(response)
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(pieces), limit)
            except StopAsyncIteration:
                return
            except Exception as error:
                raise LlmError(f"{type(error).__name__} from {settings.model}") from error
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield text
    finally:
        with contextlib.suppress(Exception):  # closing a broken stream may fail too; nothing to do then
            await response.aclose()


class LiteLLMEmbedder:
    """Any embedding model litellm can call, e.g. `openai/text-embedding-3-small`, or a local
    OpenAI-compatible server with `api_base`. Extra keyword arguments go to `litellm.aembedding`."""

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        batch_size: int = 64,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self.kwargs = kwargs

    @property
    def name(self) -> str:
        return f"litellm:{self.model}"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        litellm = await asyncio.to_thread(load_litellm)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            arguments: dict[str, Any] = {"model": self.model, "input": batch, "timeout": self.timeout, **self.kwargs}
            if self.api_base is not None:
                arguments["api_base"] = self.api_base
            if self.api_key is not None:
                arguments["api_key"] = self.api_key
            try:
                response = await litellm.aembedding(**arguments)
            except Exception as error:  # litellm raises many types; callers need one
                raise EmbeddingModelError(f"embedding with {self.model} failed: {error}") from error
            items = sorted(response.data, key=lambda item: _field(item, "index"))
            rows.extend(_field(item, "embedding") for item in items)
        return normalise(np.asarray(rows, dtype=np.float32))


def _field(item: Any, key: str) -> Any:
    return item[key] if isinstance(item, dict) else getattr(item, key)
