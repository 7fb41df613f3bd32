"""Find e2e test files, validate them and turn them into `TestCase`s (testing.md §1, §3.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecalm.dialogue.commands import Clarify, Command, SetSlot, StartFlow
from voicecalm.dialogue.dsl import parse_commands, post_process
from voicecalm.project import Project
from voicecalm.project.file_errors import parse
from voicecalm.project.problems import Location, Problem, ProblemLog
from voicecalm.project.yaml_source import LocatedDict, LocatedList, read_yaml
from voicecalm.testing.e2e.cases import (
    Annotation,
    Assertion,
    BotStep,
    ExpectBotText,
    ExpectSlots,
    ExpectUtter,
    SlotExpectation,
    Step,
    TestCase,
    UserStep,
)
from voicecalm.testing.e2e.model import (
    BotStepModel,
    ConftestModel,
    LlmJudgeModel,
    SlotWasSetStepModel,
    TestCaseModel,
    TestFileModel,
    UserStepModel,
    UtterStepModel,
    assertion_kind,
)
from voicecalm.understanding.understand import DEFAULT_MAX_CHARACTERS

YAML_SUFFIXES = (".yml", ".yaml")
CONFTEST_NAMES = ("conftest.yml", "conftest.yaml")
STUB_SEPARATOR = "::"


class E2ELoadError(Exception):
    """Test files that cannot be run; carries every problem found, errors and warnings."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class LoadedTests:
    cases: list[TestCase]
    warnings: list[Problem]


@dataclass(frozen=True, slots=True)
class _Conftest:
    fixtures: dict[str, dict[str, Any]]
    llm_judge: LlmJudgeModel | None


def holds_e2e_tests(path: Path) -> bool:
    """Whether `path` is, or holds, a YAML file with `test_cases` (without validating it)."""
    return any(_has_test_cases(file, ProblemLog()) is not None for file in _yaml_files(path))


def load_tests(path: Path, project: Project) -> LoadedTests:
    problems = ProblemLog()
    root = path if path.is_dir() else path.parent
    cases: list[TestCase] = []
    for file in _yaml_files(path):
        raw = _has_test_cases(file, problems)
        if raw is not None:
            cases += _FileReader(file, project, problems, _conftest(file.parent, root, problems)).read(raw)
    if problems.has_errors:
        raise E2ELoadError(problems.problems)
    return LoadedTests(cases, list(problems.warnings))


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(
        p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.name not in CONFTEST_NAMES and p.is_file()
    )


def _has_test_cases(file: Path, problems: ProblemLog) -> LocatedDict | None:
    data = read_yaml(file, file, problems)
    return data if isinstance(data, LocatedDict) and "test_cases" in data else None


def _conftest(folder: Path, root: Path, problems: ProblemLog) -> _Conftest:
    """Shared fixtures and judge from `conftest.yml` files between the root and the test file;
    the nearest one wins."""
    chain = [folder, *folder.parents]
    folders = chain[: chain.index(root) + 1] if root in chain else [folder]
    fixtures: dict[str, dict[str, Any]] = {}
    judge: LlmJudgeModel | None = None
    for directory in reversed(folders):
        for name in CONFTEST_NAMES:
            file = directory / name
            if not file.is_file():
                continue
            raw = read_yaml(file, file, problems)
            model = parse(ConftestModel, raw if raw is not None else {}, file, problems)
            if model is not None:
                fixtures.update(_fixtures(model.fixtures))
                judge = model.llm_judge or judge
    return _Conftest(fixtures, judge)


def _named(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: value for entry in entries for name, value in entry.items()}


def _fixtures(entries: list[dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    return {name: _named(slots) for name, slots in _named(entries).items()}


def stub_case_name(test_case: str) -> str:
    return test_case.replace(" ", "_")


class _FileReader:
    def __init__(self, file: Path, project: Project, problems: ProblemLog, conftest: _Conftest) -> None:
        self.file = file
        self.project = project
        self.problems = problems
        self.conftest = conftest
        self.user_flow_ids = {flow.id for flow in project.user_flows}
        settings = project.config.command_generator
        self.max_characters = settings.user_input.max_characters if settings else DEFAULT_MAX_CHARACTERS

    def read(self, raw: LocatedDict) -> list[TestCase]:
        model = parse(TestFileModel, raw, self.file, self.problems)
        if model is None:
            return []
        fixtures = {**self.conftest.fixtures, **_fixtures(model.fixtures)}
        self._check_fixture_slots(fixtures, raw)
        metadata = _named(model.metadata)
        raw_cases: LocatedList = raw["test_cases"]
        self._check_stub_targets(model, raw)
        return [
            self._case(case, raw_cases[index], raw_cases.location_of(index), model, fixtures, metadata)
            for index, case in enumerate(model.test_cases)
        ]

    def _check_fixture_slots(self, fixtures: Mapping[str, Mapping[str, Any]], raw: LocatedDict) -> None:
        for name, slots in fixtures.items():
            for slot in slots:
                if slot not in self.project.domain.slots:
                    self.problems.warning(raw.location_of("fixtures"), f"fixture '{name}' sets unknown slot '{slot}'")

    def _check_stub_targets(self, model: TestFileModel, raw: LocatedDict) -> None:
        cases = {stub_case_name(case.test_case) for case in model.test_cases}
        for key in model.stub_custom_actions:
            case, _, action = key.rpartition(STUB_SEPARATOR)
            where = raw["stub_custom_actions"].location_of(key)
            if case and case not in cases:
                self.problems.warning(where, f"stub '{key}' names no test case of this file")
            if action not in self.project.domain.actions:
                self.problems.warning(where, f"stub '{key}' names no custom action of the domain")

    def _case(
        self,
        case: TestCaseModel,
        raw: LocatedDict,
        location: Location,
        model: TestFileModel,
        fixtures: Mapping[str, Mapping[str, Any]],
        metadata: Mapping[str, Mapping[str, Any]],
    ) -> TestCase:
        slot_values: dict[str, Any] = {}
        for name in case.fixtures:
            if name in fixtures:
                slot_values.update(fixtures[name])
            else:
                self.problems.error(raw.location_of("fixtures"), f"unknown fixture '{name}'")
        case_metadata = self._metadata(case.metadata, metadata, raw)
        assertion_style = any(isinstance(step, UserStepModel) and step.assertions is not None for step in case.steps)
        raw_steps: LocatedList = raw["steps"]
        steps: list[Step] = []
        for index, step in enumerate(case.steps):
            where = raw_steps.location_of(index)
            if isinstance(step, UserStepModel):
                steps.append(self._user_step(step, raw_steps[index], where, case_metadata, metadata))
            elif assertion_style:
                self.problems.warning(
                    where, "ignored: bot and slot steps have no effect in an assertion-style test case"
                )
            else:
                steps.append(self._bot_step(step, where))
        return TestCase(
            name=case.test_case,
            file=self.file,
            location=location,
            steps=tuple(steps),
            assertion_style=assertion_style,
            fixtures=slot_values,
            metadata=case_metadata,
            stubs=self._stubs(model.stub_custom_actions, case.test_case),
            llm_judge=self.conftest.llm_judge,
        )

    def _metadata(
        self, name: str | None, metadata: Mapping[str, Mapping[str, Any]], raw: LocatedDict
    ) -> dict[str, Any]:
        if name is None:
            return {}
        if name not in metadata:
            self.problems.error(raw.location_of("metadata"), f"unknown metadata '{name}'")
            return {}
        return dict(metadata[name])

    def _stubs(self, stubs: Mapping[str, dict[str, Any]], case_name: str) -> dict[str, dict[str, Any]]:
        file_wide = {key: body for key, body in stubs.items() if STUB_SEPARATOR not in key}
        prefix = stub_case_name(case_name) + STUB_SEPARATOR
        for_case = {key.removeprefix(prefix): body for key, body in stubs.items() if key.startswith(prefix)}
        return {**file_wide, **for_case}

    def _user_step(
        self,
        step: UserStepModel,
        raw: LocatedDict,
        where: Location,
        case_metadata: Mapping[str, Any],
        metadata: Mapping[str, Mapping[str, Any]],
    ) -> UserStep:
        text = step.user
        stripped = text.strip()
        reaches_generator = bool(stripped) and not stripped.startswith("/") and len(text) <= self.max_characters
        annotation = None
        if step.commands is not None:
            if reaches_generator:
                annotation = Annotation(self._commands(raw["commands"]), where)
            else:
                self.problems.warning(
                    raw.location_of("commands"),
                    "`commands:` ignored: this message never reaches the command generator "
                    "(payload, empty or over-long)",
                )
        raw_assertions: LocatedList = raw.get("assertions") or LocatedList()
        return UserStep(
            text=text,
            location=where,
            metadata={**case_metadata, **self._metadata(step.metadata, metadata, raw)},
            annotation=annotation,
            reaches_generator=reaches_generator,
            assertions=tuple(
                Assertion(assertion_kind(raw_assertions[i]) or "", check, raw_assertions.location_of(i))
                for i, check in enumerate(step.assertions or ())
            ),
            assertion_order_enabled=step.assertion_order_enabled,
        )

    def _commands(self, lines: LocatedList) -> tuple[Command, ...]:
        commands: list[Command] = []
        for index, line in enumerate(lines):
            where = lines.location_of(index)
            parsed = parse_commands(line)
            if not parsed:
                self.problems.error(where, f"`{line}` is not a command (DSL v2 or v1)")
                continue
            unknown = self._unknown_names(parsed)
            for message in unknown:
                self.problems.error(where, message)
            processed = post_process(parsed, self.user_flow_ids)
            if not processed and not unknown:
                self.problems.error(where, f"`{line}` yields no command")
            commands += processed
        return tuple(commands)

    def _unknown_names(self, commands: list[Command]) -> list[str]:
        messages = []
        for command in commands:
            match command:
                case StartFlow(flow=flow) | SetSlot(name="flow_name", value=flow) if flow not in self.user_flow_ids:
                    messages.append(f"unknown flow '{flow}'")
                case SetSlot(name=name) if name != "flow_name" and name not in self.project.domain.slots:
                    messages.append(f"unknown slot '{name}'")
                case Clarify(options=options):
                    messages += [f"unknown flow '{o}'" for o in options if o not in self.user_flow_ids]
        return messages

    def _bot_step(self, step: Any, where: Location) -> BotStep:
        if isinstance(step, UtterStepModel):
            return ExpectUtter(step.utter, where)
        if isinstance(step, BotStepModel):
            return ExpectBotText(step.bot, where)
        present = isinstance(step, SlotWasSetStepModel)
        entries = step.slot_was_set if present else step.slot_was_not_set
        return ExpectSlots(tuple(_slot_expectation(entry) for entry in entries), present, where)


def _slot_expectation(entry: str | dict[str, Any]) -> SlotExpectation:
    if isinstance(entry, str):
        return SlotExpectation(entry)
    (name, value), = entry.items()
    return SlotExpectation(str(name), value, check_value=True)
