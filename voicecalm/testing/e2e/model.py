"""The shape of e2e test files and `conftest.yml`, as pydantic models: unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)


class FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text(value: Any) -> Any:
    # `- user: 50` is a number in YAML; the user still typed "50".
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]


def _single_key(entries: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    if any(len(entry) != 1 for entry in entries):
        raise ValueError(f"each {what} entry is one `name: value` pair")
    return entries


# --- assertions (assertion style) ------------------------------------------------------------


class FlowIds(FileModel):
    flow_ids: list[str] = Field(min_length=1)
    operator: Literal["any"] = "any"


class FlowStarted(FileModel):
    flow_started: str | FlowIds


class FlowEnd(FileModel):
    flow_id: str
    flow_step_id: str | None = None


class FlowCompleted(FileModel):
    flow_completed: FlowEnd


class FlowCancelled(FileModel):
    flow_cancelled: FlowEnd


class ClarificationIds(FileModel):
    flow_ids: list[str] = Field(min_length=1)
    operator: Literal["any", "all"] = "all"


class PatternClarificationContains(FileModel):
    pattern_clarification_contains: Annotated[list[str], Field(min_length=1)] | ClarificationIds


class ActionExecuted(FileModel):
    action_executed: str


class SlotCheck(FileModel):
    """`value` is compared only when the file gives it (`value: null` expects an empty slot)."""

    name: str
    value: Any = None

    @property
    def has_value(self) -> bool:
        return "value" in self.model_fields_set


class SlotWasSet(FileModel):
    slot_was_set: list[SlotCheck] = Field(min_length=1)


class SlotWasNotSet(FileModel):
    slot_was_not_set: list[SlotCheck] = Field(min_length=1)


class Button(FileModel):
    title: Text
    payload: str


class BotMessageCheck(FileModel):
    utter_name: str | None = None
    buttons: list[Button] | None = None
    text_matches: str | None = None

    @model_validator(mode="after")
    def _something_to_check(self) -> BotMessageCheck:
        if self.utter_name is None and self.buttons is None and self.text_matches is None:
            raise ValueError("give at least one of `utter_name`, `buttons`, `text_matches`")
        return self

    @field_validator("text_matches")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from error
        return pattern


class BotUttered(FileModel):
    bot_uttered: BotMessageCheck


class BotDidNotUtter(FileModel):
    bot_did_not_utter: BotMessageCheck


class RelevanceCheck(FileModel):
    threshold: float = Field(ge=0, le=1)
    utter_name: str | None = None
    utter_source: str | None = None


class GroundednessCheck(RelevanceCheck):
    ground_truth: Text | None = None


class GenerativeResponseIsRelevant(FileModel):
    generative_response_is_relevant: RelevanceCheck


class GenerativeResponseIsGrounded(FileModel):
    generative_response_is_grounded: GroundednessCheck


ASSERTION_MODELS: dict[str, type[FileModel]] = {
    "flow_started": FlowStarted,
    "flow_completed": FlowCompleted,
    "flow_cancelled": FlowCancelled,
    "pattern_clarification_contains": PatternClarificationContains,
    "action_executed": ActionExecuted,
    "slot_was_set": SlotWasSet,
    "slot_was_not_set": SlotWasNotSet,
    "bot_uttered": BotUttered,
    "bot_did_not_utter": BotDidNotUtter,
    "generative_response_is_relevant": GenerativeResponseIsRelevant,
    "generative_response_is_grounded": GenerativeResponseIsGrounded,
}
MANTLE_PREFIXES = ("skill_", "memory_", "ordered_block_", "tool_")


def assertion_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def _known_assertion(value: Any) -> Any:
    kind = assertion_kind(value)
    if kind is None:
        raise ValueError("an assertion is a mapping with one key, the assertion type")
    if kind.startswith(MANTLE_PREFIXES):
        raise ValueError(f"'{kind}' is a Rasa Mantle assertion; voicecalm does not support it")
    if kind not in ASSERTION_MODELS:
        raise ValueError(f"unknown assertion '{kind}' (known: {', '.join(ASSERTION_MODELS)})")
    return value


AssertionModel = Annotated[
    Annotated[
        Annotated[FlowStarted, Tag("flow_started")]
        | Annotated[FlowCompleted, Tag("flow_completed")]
        | Annotated[FlowCancelled, Tag("flow_cancelled")]
        | Annotated[PatternClarificationContains, Tag("pattern_clarification_contains")]
        | Annotated[ActionExecuted, Tag("action_executed")]
        | Annotated[SlotWasSet, Tag("slot_was_set")]
        | Annotated[SlotWasNotSet, Tag("slot_was_not_set")]
        | Annotated[BotUttered, Tag("bot_uttered")]
        | Annotated[BotDidNotUtter, Tag("bot_did_not_utter")]
        | Annotated[GenerativeResponseIsRelevant, Tag("generative_response_is_relevant")]
        | Annotated[GenerativeResponseIsGrounded, Tag("generative_response_is_grounded")],
        Discriminator(assertion_kind),
    ],
    BeforeValidator(_known_assertion),
]


# --- steps -----------------------------------------------------------------------------------


class UserStepModel(FileModel):
    user: Text
    metadata: str | None = None
    commands: list[str] | None = None  # vc: the commands the generator should predict
    assertions: list[AssertionModel] | None = None
    assertion_order_enabled: bool = False


class UtterStepModel(FileModel):
    utter: str


class BotStepModel(FileModel):
    bot: Text


# A conversation-style slot entry: a slot name, or one `slot: value` pair.
SlotEntry = str | dict[str, Any]


def _slot_entries(entries: list[SlotEntry]) -> list[SlotEntry]:
    if any(isinstance(entry, dict) and len(entry) != 1 for entry in entries):
        raise ValueError("each entry is a slot name or one `slot: value` pair")
    return entries


class SlotWasSetStepModel(FileModel):
    slot_was_set: list[SlotEntry] = Field(min_length=1)

    @field_validator("slot_was_set")
    @classmethod
    def _entries(cls, entries: list[SlotEntry]) -> list[SlotEntry]:
        return _slot_entries(entries)


class SlotWasNotSetStepModel(FileModel):
    slot_was_not_set: list[SlotEntry] = Field(min_length=1)

    @field_validator("slot_was_not_set")
    @classmethod
    def _entries(cls, entries: list[SlotEntry]) -> list[SlotEntry]:
        return _slot_entries(entries)


STEP_KEYS = ("user", "utter", "bot", "slot_was_set", "slot_was_not_set")


def step_key(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    keys = [key for key in STEP_KEYS if key in value]
    return keys[0] if len(keys) == 1 else None


def _step_tag(value: Any) -> str | None:
    # Tags are not keys of the step, so that error locations follow the step's own keys.
    key = step_key(value)
    return f"{key} step" if key else None


StepModel = Annotated[
    Annotated[UserStepModel, Tag("user step")]
    | Annotated[UtterStepModel, Tag("utter step")]
    | Annotated[BotStepModel, Tag("bot step")]
    | Annotated[SlotWasSetStepModel, Tag("slot_was_set step")]
    | Annotated[SlotWasNotSetStepModel, Tag("slot_was_not_set step")],
    Discriminator(
        _step_tag,
        custom_error_type="step_type",
        custom_error_message="a step needs exactly one of `user`, `utter`, `bot`, `slot_was_set`, `slot_was_not_set`",
    ),
]


# --- files -----------------------------------------------------------------------------------


class TestCaseModel(FileModel):
    test_case: Text
    steps: list[StepModel] = Field(min_length=1)
    fixtures: list[str] = Field(default_factory=list)
    metadata: str | None = None


FixtureList = list[dict[str, list[dict[str, Any]]]]


def _fixture_slots(fixtures: FixtureList) -> FixtureList:
    _single_key(fixtures, "`fixtures`")
    for fixture in fixtures:
        for slots in fixture.values():
            _single_key(slots, "fixture slot")
    return fixtures


class TestFileModel(FileModel):
    test_cases: list[TestCaseModel]
    fixtures: FixtureList = Field(default_factory=list)
    metadata: list[dict[str, dict[str, Any]]] = Field(default_factory=list)
    stub_custom_actions: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("fixtures")
    @classmethod
    def _fixtures(cls, fixtures: FixtureList) -> FixtureList:
        return _fixture_slots(fixtures)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, entries: list[dict[str, dict[str, Any]]]) -> list[dict[str, dict[str, Any]]]:
        return _single_key(entries, "`metadata`")


class LlmJudgeModel(FileModel):
    llm: dict[str, Any] | None = None
    embeddings: dict[str, Any] | None = None


class ConftestModel(FileModel):
    fixtures: FixtureList = Field(default_factory=list)
    llm_judge: LlmJudgeModel | None = None

    @field_validator("fixtures")
    @classmethod
    def _fixtures(cls, fixtures: FixtureList) -> FixtureList:
        return _fixture_slots(fixtures)
