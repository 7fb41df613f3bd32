"""Build the command generator that `config.yml` asks for."""

from __future__ import annotations

from voicecalm.models.embedder import Embedder, LocalEmbedder
from voicecalm.project import Project
from voicecalm.project.schema import CommandGeneratorConfig
from voicecalm.understanding.generator import LLMCommandGenerator
from voicecalm.understanding.llm import LiteLLMEmbedder, LlmSettings, settings_from_config
from voicecalm.understanding.local_llm import local_endpoint


def _retrieval_embedder(config: CommandGeneratorConfig) -> Embedder:
    """The offline model, unless `flow_retrieval.embeddings` names a litellm embedding model."""
    embeddings = dict(config.flow_retrieval.embeddings or {})
    model = embeddings.pop("model", None)
    if model is None:
        return LocalEmbedder.shared()
    provider = embeddings.pop("provider", None)
    if provider and not str(model).startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    return LiteLLMEmbedder(str(model), **embeddings)


def create_generator(project: Project) -> LLMCommandGenerator | None:
    """The model named by the generator's `llm:` keys; without them, the embedded model, served
    by llama.cpp on loopback and started on first use. None when no generator is configured."""
    config = project.config.command_generator
    if config is None:
        return None
    embedder = _retrieval_embedder(config)
    if config.llm is not None and (config.llm.model or config.llm.model_group):
        settings = settings_from_config(config.llm, project)

        async def configured() -> LlmSettings:
            return settings

        return LLMCommandGenerator(project, config, configured, constrained=False, embedder=embedder)

    timeout = config.llm.timeout if config.llm is not None else 7.0

    async def embedded() -> LlmSettings:
        endpoint = await local_endpoint()
        return LlmSettings(
            model=endpoint.model,
            api_base=endpoint.api_base,
            api_key=endpoint.api_key,
            timeout=timeout,
            temperature=0.0,
            max_tokens=64,
        )

    return LLMCommandGenerator(project, config, embedded, constrained=True, embedder=embedder)
