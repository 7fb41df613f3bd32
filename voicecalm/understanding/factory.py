"""Build the command generator that `config.yml` asks for."""

from __future__ import annotations

from voicecalm.project import Project
from voicecalm.understanding.generator import LLMCommandGenerator
from voicecalm.understanding.llm import LlmSettings, settings_from_config


def create_generator(project: Project) -> LLMCommandGenerator | None:
    """A remote or local model named by the generator's `llm:` keys; None without a generator."""
    config = project.config.command_generator
    if config is None or config.llm is None or not (config.llm.model or config.llm.model_group):
        return None
    settings = settings_from_config(config.llm, project)

    async def configured() -> LlmSettings:
        return settings

    return LLMCommandGenerator(project, config, configured, constrained=False)
