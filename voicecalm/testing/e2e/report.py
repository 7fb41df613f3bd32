"""Readable results: failures with a transcript diff or the failed assertion, a table per
assertion type, the DU report, and the files `--junit-xml` and `-o` ask for (testing.md §3)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from voicecalm.project import Project
from voicecalm.testing.e2e.cases import ExpectBotText, ExpectSlots, ExpectUtter, UserStep
from voicecalm.testing.e2e.conversation import StepOutcome
from voicecalm.testing.e2e.du import DuReport, command_lines
from voicecalm.testing.e2e.results import CaseResult
from voicecalm.testing.e2e.turn_events import event_line, transcript_line
from voicecalm.tracker.events import SlotSet

PASSED_FILE = "e2e_results_passed.yml"
FAILED_FILE = "e2e_results_failed.yml"
DIFF_STYLES = {"-": "red", "+": "green"}


def _where(result: CaseResult) -> str:
    return f"{result.case.file}:{result.case.location.line}"


def failure_lines(result: CaseResult, project: Project) -> list[str]:
    """The explanation of a failed case, without its header."""
    failure = result.failure
    if failure is None:
        return []
    lines = [f"{failure.location.file}:{failure.location.line}: {failure.step}"]
    if failure.assertion is not None:
        assertion = failure.assertion.assertion
        lines.append(f"  {assertion.kind} at {assertion.location.file}:{assertion.location.line}: {failure.message}")
        lines.append("  events of this turn:")
        for event in failure.turn.events if failure.turn else ():
            if (line := event_line(event)) is not None:
                lines.append(f"    {line}")
    else:
        lines.append(f"  {failure.message}")
        if not result.case.assertion_style:
            lines.append("  transcript (- expected, + actual):")
            lines += [f"  {line}" for line in transcript_diff(result, project)]
    return lines + _spoken_lines(result)


def _spoken_lines(result: CaseResult) -> list[str]:
    """Spoken e2e: each line said before the case stopped, written vs heard, so the author sees
    whether the ASR or the understanding broke."""
    lines = []
    for step, heard, as_written in _spoken(result):
        mark = "" if as_written else "   <- heard differently"
        lines.append(f"    line {step.location.line}: written: {step.text}")
        lines.append(f"    {' ' * len(str(step.location.line))}        heard:   {' | '.join(heard) or '(nothing)'}{mark}")
    return ["  spoken lines (written / heard by the ASR):", *lines] if lines else []


def _spoken(result: CaseResult) -> list[tuple[UserStep, tuple[str, ...], bool]]:
    """(step, transcripts, heard as written) of each spoken line played."""
    return [
        (turn.step, turn.heard, turn.heard_as_written)
        for turn in result.turns
        if turn.step is not None and turn.heard is not None
    ]


def print_spoken_summary(results: Sequence[CaseResult], caller: str, console: Console) -> None:
    spoken = [line for result in results for line in _spoken(result)]
    as_written = sum(as_written for _, _, as_written in spoken)
    console.print(
        f"spoken lines: {len(spoken)}, heard as written: {as_written} "
        f"(case, punctuation and number spelling aside); caller voice: {caller}",
        markup=False,
    )


def transcript_diff(result: CaseResult, project: Project) -> list[str]:
    """Expected vs actual, turn by turn: matched events as context, unmet steps as `-`,
    events no step asked for as `+`."""
    lines: list[str] = []
    for index, turn in enumerate(result.turns):
        if turn.step is not None:
            lines.append(f"  user: {turn.step.text}")
        outcomes = [o for o in result.step_outcomes if o.turn == index]
        used = {id(event) for outcome in outcomes for event in outcome.matched}
        for outcome in outcomes:
            if not outcome.passed:
                lines += [f"- {line}" for line in _expected_lines(outcome)]
        for event in turn.bot_side:
            if (line := transcript_line(event, project)) is not None:
                lines.append(("  " if id(event) in used else "+ ") + line)
    return lines


def _expected_lines(outcome: StepOutcome) -> list[str]:
    step = outcome.step
    if isinstance(step, ExpectUtter):
        return [f"bot: {step.name}"]
    if isinstance(step, ExpectBotText):
        return [f'bot: "{step.text}"']
    assert isinstance(step, ExpectSlots)
    if not step.present:
        return [f"slot_was_not_set: {entry.describe()}" for entry in step.entries]
    set_slots = {event.slot for event in outcome.matched if isinstance(event, SlotSet)}
    return [f"slot_was_set: {entry.describe()}" for entry in step.entries if entry.name not in set_slots]


def print_failures(results: Sequence[CaseResult], project: Project, console: Console) -> None:
    for result in results:
        if result.passed:
            continue
        console.print(f"--- {result.case.name} in {_where(result)} failed ---", style="bold red", markup=False)
        for line in failure_lines(result, project):
            console.print(line, style=_diff_style(line), markup=False)
        console.print()


def _diff_style(line: str) -> str | None:
    # Transcript diff lines are indented by two, then `- `, `+ ` or two spaces.
    return DIFF_STYLES.get(line[2:3]) if line[3:4] == " " else None


def print_check_table(results: Sequence[CaseResult], console: Console) -> None:
    passed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for result in results:
        for kind, ok in result.checks():
            total[kind] += 1
            passed[kind] += ok
    if not total:
        return
    table = Table("assertion", "passed", "total", title="Assertions and steps checked")
    for kind in sorted(total):
        table.add_row(kind, str(passed[kind]), str(total[kind]))
    console.print(table)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def print_du_report(report: DuReport, console: Console) -> None:
    console.print("Dialogue understanding (predicted vs `commands:`)", style="bold")
    mismatches = [s for s in report.steps if not s.match]
    if mismatches:
        table = Table("test", "step", "user", "EXPECTED", "PREDICTED", title="Mismatching steps")
        for scored in mismatches:
            step = scored.step
            table.add_row(
                step.test,
                f"{step.file}:{step.line}",
                step.text,
                "\n".join(command_lines(step.expected)) or "(none)",
                "\n".join(command_lines(step.predicted)) or "(none)",
            )
        console.print(table)
    table = Table("command", "count", "TP", "FP", "FN", "precision", "recall", "F1", title="Per command type")
    for name, counts in report.per_command.items():
        table.add_row(
            name, str(counts.count), str(counts.tp), str(counts.fp), str(counts.fn),
            _number(counts.precision), _number(counts.recall), _number(counts.f1),
        )
    console.print(table)
    micro = report.micro
    console.print(
        f"annotated steps: {len(report.steps)}, exact-match accuracy: {_number(report.accuracy)}, "
        f"micro precision: {_number(micro.precision)}, recall: {_number(micro.recall)}, F1: {_number(micro.f1)}",
        markup=False,
    )
    for scored in report.first_divergent:
        console.print(
            f"first divergent step of {scored.step.test}: {scored.step.file}:{scored.step.line}", markup=False
        )


def print_final_line(results: Sequence[CaseResult], console: Console) -> None:
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    console.print(f"{passed} passed, {failed} failed", style="bold green" if failed == 0 else "bold red", markup=False)


def write_junit_xml(results: Sequence[CaseResult], project: Project, path: Path) -> None:
    failures = sum(not r.passed for r in results)
    seconds = f"{sum(r.seconds for r in results):.3f}"
    counts = {"tests": str(len(results)), "failures": str(failures), "time": seconds}
    suites = ElementTree.Element("testsuites", counts)
    suite = ElementTree.SubElement(suites, "testsuite", {"name": "voicecalm e2e", "errors": "0", **counts})
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            name=result.case.name,
            classname=str(result.case.file),
            file=str(result.case.file),
            line=str(result.case.location.line),
            time=f"{result.seconds:.3f}",
        )
        if result.failure is not None:
            failure = ElementTree.SubElement(case, "failure", message=result.failure.message)
            failure.text = "\n".join(failure_lines(result, project))
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def write_e2e_results(results: Sequence[CaseResult], project: Project, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, passed in ((PASSED_FILE, True), (FAILED_FILE, False)):
        entries = [_result_entry(r, project) for r in results if r.passed == passed]
        (folder / name).write_text(
            yaml.safe_dump({"test_results": entries}, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )


def _result_entry(result: CaseResult, project: Project) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": result.case.name,
        "file": str(result.case.file),
        "line": result.case.location.line,
        "pass_status": result.passed,
        "expected_steps": [step.describe() for step in result.case.steps],
    }
    failure = result.failure
    if failure is not None:
        entry["error_line"] = failure.location.line
        entry["message"] = failure.message
        if failure.assertion is not None:
            entry["assertion_failure"] = {
                "type": failure.assertion.assertion.kind,
                "line": failure.assertion.assertion.location.line,
                "message": failure.message,
            }
        elif not result.case.assertion_style:
            entry["difference"] = transcript_diff(result, project)
    spoken = [{"line": step.location.line, "written": step.text, "heard": list(heard)} for step, heard, _ in _spoken(result)]
    if spoken:
        entry["spoken_lines"] = spoken
    return entry

