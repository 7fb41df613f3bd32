"""The shape of every project file, as pydantic models: unknown keys are errors.

These models check what a file may contain. The flow graph the engine runs is built from them
in `flows.py`; the domain, config, endpoints and credentials models are used as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator


class FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenModel(BaseModel):
    """Sections whose inner keys belong to a component configured elsewhere (stores, channels)."""

    model_config = ConfigDict(extra="allow", frozen=True)


# --- flows -----------------------------------------------------------------------------------

StepTarget = str


InlineSteps = Annotated[list["StepModel"], Field(min_length=1)]


class ConditionalNext(FileModel):
    if_: str | bool = Field(alias="if")
    then: StepTarget | InlineSteps


class ElseNext(FileModel):
    else_: StepTarget | InlineSteps = Field(alias="else")


def _next_branch_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "if" in value:
            return "if"
        if "else" in value:
            return "else"
    return None


NextBranch = Annotated[
    Annotated[ConditionalNext, Tag("if")] | Annotated[ElseNext, Tag("else")],
    Discriminator(_next_branch_kind, custom_error_type="next_branch", custom_error_message="a `next` entry needs `if` + `then`, or `else`"),
]
Next = StepTarget | Annotated[list[NextBranch], Field(min_length=1)]


class Rejection(FileModel):
    if_: str | bool = Field(alias="if")
    utter: str


class Dtmf(FileModel):
    length: int | None = Field(default=None, ge=1)
    finish_on_key: str | None = None
    allow_audio_input: bool = True

    @model_validator(mode="after")
    def _one_way_to_finish(self) -> "Dtmf":
        if self.length is not None and self.finish_on_key is not None:
            raise ValueError("`dtmf` takes `length` or `finish_on_key`, not both")
        return self


class BaseStepModel(FileModel):
    id: str | None = None
    next: Next | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class DescribedStepModel(BaseStepModel):
    description: str | None = None


class ActionStepModel(BaseStepModel):
    action: str


class CollectStepModel(DescribedStepModel):
    collect: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
    utter: str | None = None
    ask_before_filling: bool = False
    reset_after_flow_ends: bool = True
    force_slot_filling: bool = False
    rejections: list[Rejection] = Field(default_factory=list)
    silence_timeout: Annotated[float, Field(ge=0)] | dict[str, Annotated[float, Field(ge=0)]] | None = None
    dtmf: Dtmf | None = None


class SetSlotsStepModel(DescribedStepModel):
    set_slots: list[dict[str, Any]]

    @field_validator("set_slots")
    @classmethod
    def _one_slot_per_entry(cls, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(len(entry) != 1 for entry in entries):
            raise ValueError("each `set_slots` entry is one `slot: value` pair")
        return entries


class NoopStepModel(DescribedStepModel):
    noop: Literal[True]


class LinkStepModel(DescribedStepModel):
    link: str


class CallStepModel(DescribedStepModel):
    call: str

    @model_validator(mode="before")
    @classmethod
    def _no_agents_or_tools(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(key in data for key in ("mcp_server", "mapping", "exit_if")):
            raise ValueError("`call` to an MCP tool or a sub-agent is not supported")
        return data


STEP_TYPE_KEYS = ("action", "collect", "set_slots", "noop", "link", "call")


def step_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kinds = [key for key in STEP_TYPE_KEYS if key in value]
    return kinds[0] if len(kinds) == 1 else None


StepModel = Annotated[
    Annotated[ActionStepModel, Tag("action")]
    | Annotated[CollectStepModel, Tag("collect")]
    | Annotated[SetSlotsStepModel, Tag("set_slots")]
    | Annotated[NoopStepModel, Tag("noop")]
    | Annotated[LinkStepModel, Tag("link")]
    | Annotated[CallStepModel, Tag("call")],
    Discriminator(
        step_kind,
        custom_error_type="step_type",
        custom_error_message="a step needs exactly one of `action`, `collect`, `set_slots`, `noop`, `link`, `call`",
    ),
]
ConditionalNext.model_rebuild()
ElseNext.model_rebuild()


class NluTriggerIntent(FileModel):
    name: str
    confidence_threshold: float = Field(default=0.0, ge=0, le=1)


class NluTrigger(FileModel):
    intent: str | NluTriggerIntent


class FlowTranslation(FileModel):
    name: str


class FlowModel(FileModel):
    description: str | None = None
    steps: list[StepModel] = Field(min_length=1)
    name: str | None = None
    if_: str | bool | None = Field(default=None, alias="if")
    always_include_in_prompt: bool = False
    nlu_trigger: list[NluTrigger] | None = None
    persisted_slots: list[str] = Field(default_factory=list)
    run_pattern_completed: bool = True
    translation: dict[str, FlowTranslation] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    on_activate: Any = None


# --- domain ----------------------------------------------------------------------------------

SlotType = Literal["text", "bool", "float", "categorical", "list", "any"]
MappingType = Literal[
    "from_llm", "controlled", "custom", "from_entity", "from_intent", "from_text", "from_trigger_intent"
]


class MappingCondition(FileModel):
    active_flow: str | None = None
    requested_slot: str | None = None
    active_loop: str | None = None


class SlotMapping(FileModel):
    type: MappingType = "from_llm"
    allow_nlu_correction: bool = False
    conditions: list[MappingCondition] = Field(default_factory=list)
    run_action_every_turn: str | None = None
    action: str | None = None
    coexistence_system: str | None = None
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    intent: str | list[str] | None = None
    not_intent: str | list[str] | None = None
    value: Any = None


class SlotValidation(FileModel):
    rejections: list[Rejection] = Field(default_factory=list)
    refill_utter: str | None = None


class SlotModel(FileModel):
    type: SlotType
    initial_value: Any = None
    mappings: list[SlotMapping] = Field(default_factory=list)
    values: list[Any] | None = None
    min_value: float | None = None
    max_value: float | None = None
    influence_conversation: bool = False
    validation: SlotValidation | None = None

    @model_validator(mode="after")
    def _type_specific_keys(self) -> "SlotModel":
        if self.type == "categorical" and not self.values:
            raise ValueError("a categorical slot needs a non-empty `values` list")
        if self.type != "categorical" and self.values is not None:
            raise ValueError("`values` is only allowed on categorical slots")
        if self.type != "float" and (self.min_value is not None or self.max_value is not None):
            raise ValueError("`min_value`/`max_value` are only allowed on float slots")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError("`min_value` is greater than `max_value`")
        return self

    @property
    def mapping_types(self) -> frozenset[str]:
        types = {"controlled" if m.type == "custom" else m.type for m in self.mappings}
        return frozenset(types or {"from_llm"})


class Button(FileModel):
    title: str
    payload: str


class LegacyCondition(FileModel):
    type: Literal["slot"]
    name: str
    value: Any


class ResponseVariation(FileModel):
    text: str | None = None
    buttons: list[Button] = Field(default_factory=list)
    image: str | None = None
    custom: dict[str, Any] | None = None
    attachment: Any = None
    quick_replies: Any = None
    elements: Any = None
    button_type: str | None = None
    channel: str | None = None
    condition: str | list[LegacyCondition] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    translation: dict[str, str] = Field(default_factory=dict)
    allow_interruptions: bool = True


class ActionOptions(FileModel):
    send_domain: bool = False


class SessionConfig(FileModel):
    session_expiration_time: float = 60
    carry_over_slots_to_new_session: bool = True


class DomainConfig(FileModel):
    store_entities_as_slots: bool = True


DomainName = str | dict[str, Any]


class DomainFileModel(FileModel):
    version: str | None = None
    intents: list[DomainName] = Field(default_factory=list)
    entities: list[DomainName] = Field(default_factory=list)
    actions: list[str | dict[str, ActionOptions]] = Field(default_factory=list)
    responses: dict[str, Any] = Field(default_factory=dict)
    slots: dict[str, Any] = Field(default_factory=dict)
    forms: Any = None
    config: DomainConfig | None = None
    session_config: SessionConfig | None = None


# --- config.yml ------------------------------------------------------------------------------


class LlmConfig(FileModel):
    model_group: str | None = None
    provider: str | None = None
    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 7
    temperature: float | None = None
    max_completion_tokens: int = 256
    max_tokens: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class FlowRetrievalConfig(FileModel):
    active: bool = True
    num_flows: int = Field(default=20, ge=1)
    turns_to_embed: int = Field(default=1, ge=1)
    should_embed_slots: bool = True
    embeddings: dict[str, Any] | None = None


class UserInputConfig(FileModel):
    max_characters: int = 420


COMMAND_GENERATORS = ("CompactLLMCommandGenerator", "SearchReadyLLMCommandGenerator", "SingleStepLLMCommandGenerator")


class RoutingConfig(FileModel):
    """vc: message-level commands by nearest examples, before the model (understanding/router.py)."""

    active: bool = True
    min_similarity: float = Field(default=0.5, ge=-1, le=1)
    min_margin: float = Field(default=0.1, ge=0, le=2)
    # The embedded model's `start flow` is dropped when the message is less similar than this
    # to every request for that flow (CommandRouter.plausible).
    min_start_similarity: float = Field(default=0.25, ge=-1, le=1)
    # A question ("...?") at least this similar to a passage of the documents is `provide info`.
    min_document_similarity: float = Field(default=0.65, ge=-1, le=1)


class CommandGeneratorConfig(FileModel):
    name: Literal["CompactLLMCommandGenerator", "SearchReadyLLMCommandGenerator", "SingleStepLLMCommandGenerator"]
    llm: LlmConfig | None = None
    prompt_template: str | None = None
    flow_retrieval: FlowRetrievalConfig = Field(default_factory=FlowRetrievalConfig)
    user_input: UserInputConfig = Field(default_factory=UserInputConfig)
    minimize_num_calls: bool = True
    include_date_time: bool = False
    timezone: str = "UTC"
    human_handoff_command: bool = True
    fast_path: bool = True
    routing: RoutingConfig = Field(default_factory=RoutingConfig)


class ComponentConfig(OpenModel):
    """A pipeline or policy entry that voicecalm does not configure itself; kept for reporting."""

    name: str


class ConfigFileModel(FileModel):
    recipe: str = "default.v1"
    language: str = "en"
    assistant_id: str | None = None
    pipeline: list[dict[str, Any]] = Field(default_factory=list)
    policies: list[dict[str, Any]] = Field(default_factory=list)
    data: list[str] | None = None  # voicecalm: where flows live, instead of data/

    @field_validator("pipeline", "policies", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return [] if value is None else value  # `pipeline:` with nothing under it, as Rasa allows


# --- endpoints.yml and credentials.yml -------------------------------------------------------


class BasicAuth(FileModel):
    username: str
    password: str


class ActionEndpoint(FileModel):
    url: str | None = None
    actions_module: str | None = None
    token: str | None = None
    token_name: str = "token"
    headers: dict[str, str] = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    cafile: str | None = None
    timeout: float = Field(default=5, gt=0)
    enable_selective_domain: bool = False

    @model_validator(mode="after")
    def _supported_transport(self) -> "ActionEndpoint":
        if self.url is None and self.actions_module is None:
            raise ValueError("`action_endpoint` needs `url` or `actions_module`")
        if self.url is not None and self.url.startswith("grpc://"):
            raise ValueError("gRPC action servers are not supported")
        return self


class StoreConfig(OpenModel):
    type: str | None = None


class EndpointsFileModel(FileModel):
    action_endpoint: ActionEndpoint | None = None
    tracker_store: StoreConfig | None = None
    lock_store: StoreConfig | None = None
    event_broker: StoreConfig | None = None
    nlg: StoreConfig | None = None
    model_groups: list[dict[str, Any]] = Field(default_factory=list)
    vector_store: StoreConfig | None = None
    interaction_handling: dict[str, Any] = Field(default_factory=dict)


CHANNEL_NAMES = ("rest", "cmdline", "twilio_media_streams", "browser_audio", "sip", "local_audio")


class CredentialsFileModel(FileModel):
    rest: dict[str, Any] | None = None
    twilio_media_streams: dict[str, Any] | None = None
    browser_audio: dict[str, Any] | None = None
    sip: dict[str, Any] | None = None
    local_audio: dict[str, Any] | None = None
