"""Read a Rasa-layout project folder into an immutable `Project`, reporting every problem."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from voicecalm.project import file_errors, schema
from voicecalm.project.domain import BUILTIN_SLOTS, Domain, Response, Slot
from voicecalm.project.flows import Flow, Rejection, build_flow
from voicecalm.project.problems import Location, Problem, ProblemLog
from voicecalm.project.validation import validate
from voicecalm.project.yaml_source import LocatedDict, LocatedList, location_of, read_yaml

logger = logging.getLogger(__name__)

DEFAULTS_DIR = Path(__file__).parent / "defaults"
YAML_SUFFIXES = (".yml", ".yaml")
FLOW_FILE_KEYS = ("version", "flows")
NLU_ONLY_KEYS = ("nlu", "stories", "rules", "responses")
KNOWN_POLICIES = ("FlowPolicy", "EnterpriseSearchPolicy")
NLU_COMMAND_ADAPTER = "NLUCommandAdapter"


@dataclass(frozen=True, slots=True)
class AssistantConfig:
    recipe: str
    language: str
    assistant_id: str | None
    command_generator: schema.CommandGeneratorConfig | None
    handles_intent_payloads: bool
    policies: tuple[schema.ComponentConfig, ...]


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    config: AssistantConfig
    domain: Domain
    flows: Mapping[str, Flow]
    endpoints: schema.EndpointsFileModel
    credentials: schema.CredentialsFileModel
    warnings: tuple[Problem, ...] = ()

    @property
    def user_flows(self) -> tuple[Flow, ...]:
        return tuple(flow for flow in self.flows.values() if not flow.is_pattern)


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())


class _ProjectReader:
    def __init__(self, root: Path, problems: ProblemLog) -> None:
        self.root = root
        self.problems = problems

    def display(self, path: Path) -> Path:
        if path.is_relative_to(self.root):
            return path.relative_to(self.root)
        if path.is_relative_to(DEFAULTS_DIR):
            return Path("<voicecalm>/defaults") / path.relative_to(DEFAULTS_DIR)
        return path

    def read(self, path: Path) -> tuple[Any, Path]:
        shown = self.display(path)
        return read_yaml(path, shown, self.problems), shown

    def read_mapping(self, path: Path) -> tuple[LocatedDict | None, Path]:
        data, shown = self.read(path)
        if data is None:
            return None, shown
        if not isinstance(data, LocatedDict):
            self.problems.error(shown, "the file must hold a YAML mapping at the top level")
            return None, shown
        return data, shown

    # --- config.yml -----------------------------------------------------------------------

    def config(self, data_override: Sequence[Path] | None) -> tuple[AssistantConfig, list[Path]]:
        raw, shown = self.read_mapping(self.root / "config.yml")
        model = file_errors.parse(schema.ConfigFileModel, raw or {}, shown, self.problems)
        model = model or schema.ConfigFileModel()
        generator = None
        handles_intents = False
        for position, entry in enumerate(model.pipeline):
            where = raw["pipeline"].location_of(position) if raw is not None else shown
            name = entry.get("name")
            if name in schema.COMMAND_GENERATORS:
                raw_entry = raw["pipeline"][position] if raw is not None else entry
                generator = file_errors.parse(schema.CommandGeneratorConfig, raw_entry, where, self.problems) or generator
            elif name == NLU_COMMAND_ADAPTER:
                handles_intents = True
            else:
                self.problems.warning(where, f"pipeline component '{name}' is not used by voicecalm and is ignored")
        policies = []
        for position, entry in enumerate(model.policies):
            where = raw["policies"].location_of(position) if raw is not None else shown
            policy = file_errors.parse(schema.ComponentConfig, entry, where, self.problems)
            if policy is None:
                continue
            if policy.name not in KNOWN_POLICIES:
                self.problems.warning(where, f"policy '{policy.name}' is not used by voicecalm and is ignored")
            policies.append(policy)
        if data_override:
            data_paths = [self.root / p for p in data_override]
        else:
            data_paths = [self.root / p for p in (model.data or ["data"])]
        config = AssistantConfig(
            recipe=model.recipe,
            language=model.language,
            assistant_id=model.assistant_id,
            command_generator=generator,
            handles_intent_payloads=handles_intents,
            policies=tuple(policies),
        )
        return config, data_paths

    # --- domain ---------------------------------------------------------------------------

    def domain_files(self) -> list[Path]:
        single, folder = self.root / "domain.yml", self.root / "domain"
        if folder.is_dir():
            return _yaml_files(folder)
        if single.is_file():
            return [single]
        self.problems.error(Path("."), "no domain found: add domain.yml or a domain/ folder")
        return []

    def domain(self, files: Iterable[Path], defaults: Iterable[Path]) -> Domain:
        slots: dict[str, Slot] = dict(
            (name, Slot(name, definition, None)) for name, definition in BUILTIN_SLOTS.items()
        )
        responses: dict[str, Response] = {}
        actions: set[str] = set()
        sending_domain: set[str] = set()
        intents: set[str] = set()
        entities: set[str] = set()
        session_config = schema.SessionConfig()
        # Defaults first, so that any project definition replaces them silently.
        project_defined: dict[tuple[str, str], Path] = {}
        for path in [*defaults, *files]:
            is_default = path.is_relative_to(DEFAULTS_DIR)
            raw, shown = self.read_mapping(path)
            if raw is None:
                continue
            model = file_errors.parse(schema.DomainFileModel, raw, shown, self.problems)
            if model is None:
                continue
            for section, target, builder in (
                ("slots", slots, self._slot),
                ("responses", responses, self._response),
            ):
                raw_section = raw.get(section)
                for name, raw_item in getattr(model, section).items():
                    item = builder(name, raw_item, location_of(raw_section, name, shown))
                    if not is_default:
                        earlier = project_defined.get((section, name))
                        if earlier is not None:
                            self.problems.warning(
                                item.location, f"{section[:-1]} '{name}' is also defined in {earlier}; this one wins"
                            )
                        project_defined[(section, name)] = shown
                    target[name] = item
            for entry in model.actions:
                for name, options in ({entry: None} if isinstance(entry, str) else entry).items():
                    actions.add(name)
                    if options is not None and options.send_domain:
                        sending_domain.add(name)
            intents.update(_names(model.intents))
            entities.update(_names(model.entities))
            if model.session_config is not None:
                session_config = model.session_config
        return Domain(
            slots=MappingProxyType(slots),
            responses=MappingProxyType(responses),
            actions=frozenset(actions),
            actions_sending_domain=frozenset(sending_domain),
            intents=frozenset(intents),
            entities=frozenset(entities),
            session_config=session_config,
        )

    def _slot(self, name: str, raw: Any, where: Location | Path) -> Slot:
        model = file_errors.parse(schema.SlotModel, raw, where, self.problems)
        if model is None:
            # Keep the name known so that references to it do not add follow-on errors.
            return Slot(name, schema.SlotModel(type="any"), _as_location(where))
        rejections: tuple[Rejection, ...] = ()
        if model.validation is not None:
            raw_rejections = raw.get("validation", {}).get("rejections") if isinstance(raw, dict) else None
            rejections = tuple(
                Rejection(r.if_, r.utter, _as_location(location_of(raw_rejections, i, where)))
                for i, r in enumerate(model.validation.rejections)
            )
        return Slot(name, model, _as_location(where), rejections)

    def _response(self, name: str, raw: Any, where: Location | Path) -> Response:
        if not isinstance(raw, LocatedList) or not raw:
            self.problems.error(where, f"response '{name}' must be a non-empty list of variations")
            return Response(name, (), _as_location(where))
        variations = []
        for position, raw_variation in enumerate(raw):
            variation = file_errors.parse(
                schema.ResponseVariation, raw_variation, raw.location_of(position), self.problems
            )
            if variation is not None:
                variations.append(variation)
        return Response(name, tuple(variations), _as_location(where))

    # --- flows ----------------------------------------------------------------------------

    def flows(self, paths: Iterable[Path], defaults: Path) -> dict[str, Flow]:
        flows: dict[str, Flow] = {}
        for path in paths:
            if not path.exists():
                self.problems.error(self.display(path), "flows path does not exist")
                continue
            for file in _yaml_files(path):
                self._flow_file(file, flows)
        if flows:
            project_ids = set(flows)
            pattern_flows: dict[str, Flow] = {}
            self._flow_file(defaults, pattern_flows)
            for flow_id, flow in pattern_flows.items():
                if flow_id not in project_ids:
                    flows[flow_id] = flow
        return flows

    def _flow_file(self, path: Path, flows: dict[str, Flow]) -> None:
        raw, shown = self.read_mapping(path)
        if raw is None:
            return
        if "flows" not in raw:
            if any(key in raw for key in NLU_ONLY_KEYS):
                logger.info("%s holds no flows (NLU training data), skipped", shown)
            else:
                self.problems.warning(shown, "file holds no `flows:` key and is skipped")
            return
        for key in raw:
            if key not in FLOW_FILE_KEYS and key not in NLU_ONLY_KEYS:
                self.problems.error(raw.location_of(key), f"unknown key '{key}'")
        raw_flows = raw["flows"]
        if raw_flows is None:
            return
        if not isinstance(raw_flows, LocatedDict):
            self.problems.error(raw.location_of("flows"), "`flows` must map flow ids to flows")
            return
        for flow_id, raw_flow in raw_flows.items():
            where = raw_flows.location_of(flow_id)
            if not isinstance(flow_id, str):
                self.problems.error(where, f"flow id {flow_id!r} must be a string")
                continue
            if flow_id in flows:
                self.problems.error(where, f"flow '{flow_id}' is already defined in {flows[flow_id].location}")
                continue
            model = file_errors.parse(schema.FlowModel, raw_flow, where, self.problems)
            if model is not None:
                flows[flow_id] = build_flow(flow_id, model, raw_flow, where)

    # --- endpoints.yml and credentials.yml ------------------------------------------------

    def optional_file(self, name: str, model: type[file_errors.Model]) -> file_errors.Model:
        path = self.root / name
        if not path.is_file():
            return model()
        raw, shown = self.read_mapping(path)
        return file_errors.parse(model, raw or {}, shown, self.problems) or model()


def _names(entries: Iterable[str | dict[str, Any]]) -> set[str]:
    return {name for entry in entries for name in ([entry] if isinstance(entry, str) else entry)}


def _as_location(where: Location | Path) -> Location | None:
    return where if isinstance(where, Location) else None


def load_project(root: Path | str, data_paths: Sequence[Path] | None = None) -> Project:
    """Load and validate a project; raises `ProjectError` listing every error found."""
    root = Path(root).resolve()
    problems = ProblemLog()
    if not (root / "config.yml").is_file():
        problems.error(root, "not a project folder: config.yml is missing")
        problems.raise_if_errors()
    reader = _ProjectReader(root, problems)
    config, flow_paths = reader.config(data_paths)
    domain_files = reader.domain_files()
    flows = reader.flows(flow_paths, DEFAULTS_DIR / "patterns.yml")
    domain_defaults = [DEFAULTS_DIR / "domain.yml"] if flows else []
    domain = reader.domain(domain_files, domain_defaults)
    project = Project(
        root=root,
        config=config,
        domain=domain,
        flows=MappingProxyType(flows),
        endpoints=reader.optional_file("endpoints.yml", schema.EndpointsFileModel),
        credentials=reader.optional_file("credentials.yml", schema.CredentialsFileModel),
    )
    validate(project, problems)
    problems.raise_if_errors()
    return replace(project, warnings=problems.warnings)
