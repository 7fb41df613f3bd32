"""Build the command generator that `config.yml` asks for, and the model settings of the other
LLM users (document answers, chitchat, rephrasing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from voicecalm.models.embedder import Embedder, LocalEmbedder
from voicecalm.project import Project
from voicecalm.project.schema import CommandGeneratorConfig, LlmConfig
from voicecalm.understanding.generator import LLMCommandGenerator
from voicecalm.understanding.llm import LiteLLMEmbedder, LlmSettings, complete, settings_from_config
from voicecalm.understanding.local_llm import local_endpoint


def embedder_from_config(embeddings: Mapping[str, Any] | None) -> Embedder:
    """The offline model, unless `embeddings:` keys (as in Rasa: provider, model, api_base, ...)
    name a litellm embedding model."""
    embeddings = dict(embeddings or {})
    model = embeddings.pop("model", None)
    if model is None:
        return LocalEmbedder.shared()
    provider = embeddings.pop("provider", None)
    if provider and not str(model).startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    return LiteLLMEmbedder(str(model), **embeddings)


SettingsSource = Callable[[], Awaitable[LlmSettings]]


def _is_configured(config: LlmConfig | None) -> bool:
    return config is not None and bool(config.model or config.model_group)


def uses_embedded_model(project: Project) -> bool:
    """True when the command generator runs the embedded model (its `llm:` names none)."""
    generator = project.config.command_generator
    return generator is not None and not _is_configured(generator.llm)


def _fixed(settings: LlmSettings) -> SettingsSource:
    async def source() -> LlmSettings:
        return settings

    return source


def _embedded(timeout: float, temperature: float | None, max_tokens: int) -> SettingsSource:
    """The embedded model's server, started (and the model assembled) on first use."""

    async def source() -> LlmSettings:
        endpoint = await local_endpoint()
        return LlmSettings(
            model=endpoint.model,
            api_base=endpoint.api_base,
            api_key=endpoint.api_key,
            timeout=timeout,
            temperature=temperature,
            max_tokens=max_tokens,
        )

    return source


def create_generator(project: Project) -> LLMCommandGenerator | None:
    """The model named by the generator's `llm:` keys; without them, the embedded model, served
    by llama.cpp on loopback and started on first use. None when no generator is configured."""
    config = project.config.command_generator
    if config is None:
        return None
    embedder = embedder_from_config(config.flow_retrieval.embeddings)
    if _is_configured(config.llm):
        settings = _fixed(settings_from_config(config.llm, project))
        return LLMCommandGenerator(project, config, settings, constrained=False, embedder=embedder)
    timeout = config.llm.timeout if config.llm is not None else 7.0
    return LLMCommandGenerator(project, config, _embedded(timeout, 0.0, 64), constrained=True, embedder=embedder)


def llm_settings_source(
    project: Project,
    llm: Mapping[str, Any] | LlmConfig | None = None,
    *,
    explicit_only: bool = False,
    max_tokens: int = 256,
    temperature: float | None = None,
) -> SettingsSource | None:
    """The model for a component other than the command generator (document answers, chitchat,
    rephrasing): its own `llm:` keys when given; else, unless `explicit_only`, the command
    generator's model (its `llm:`, or the embedded model when it has none); else None (no model).
    `max_tokens` caps the completion; `temperature` applies unless the `llm:` keys set one.
    Raises `ValueError` when the keys are malformed."""
    own = LlmConfig.model_validate(dict(llm)) if isinstance(llm, Mapping) else llm
    generator = project.config.command_generator
    config = own if _is_configured(own) else None
    if config is None and not explicit_only and generator is not None and _is_configured(generator.llm):
        config = generator.llm
    if config is not None:
        settings = settings_from_config(config, project)
        return _fixed(
            replace(
                settings,
                max_tokens=min(settings.max_tokens, max_tokens),
                temperature=config.temperature if config.temperature is not None else temperature,
            )
        )
    if explicit_only or generator is None:
        return None
    timeout = generator.llm.timeout if generator.llm is not None else 7.0
    return _embedded(timeout, temperature, max_tokens)


def completer(source: SettingsSource, timeout: float | None = None) -> Callable[[str], Awaitable[str]]:
    """`prompt -> completion` over `source`'s model, for packages that must not import this one
    (nlg). Raises `LlmError` on failure; `timeout` (seconds) overrides the model's own."""

    async def run(prompt: str) -> str:
        settings = await source()
        if timeout is not None:
            settings = replace(settings, timeout=timeout)
        return await complete(settings, prompt)

    return run
