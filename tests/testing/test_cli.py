"""`voicecalm test e2e`: exit codes, default paths, output files and the final line."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.testing.conftest import BANK, STUBS, last_line, run_cli
from voicecalm.cli import app

PASSING = """
test_cases:
  - test_case: passes
    steps:
      - user: "send money"
        commands: [start flow transfer_money]
      - utter: utter_ask_recipient
"""
FAILING = """
test_cases:
  - test_case: fails
    steps:
      - user: "send money"
        commands: [start flow transfer_money]
      - utter: utter_ask_amount
"""


def test_exit_code_0_when_everything_passes_and_the_last_line_counts(write) -> None:
    result = run_cli(write(PASSING), "--commands", "oracle")
    assert result.exit_code == 0
    assert last_line(result.output) == "1 passed, 0 failed"


def test_a_folder_is_walked_for_files_with_test_cases(write, tmp_path: Path) -> None:
    write(PASSING, "a/one.yml")
    write(FAILING, "a/b/two.yaml")
    (tmp_path / "a" / "b" / "not_a_test.yml").write_text("flows: {}\n")
    result = run_cli(tmp_path / "a", "--commands", "oracle")
    assert result.exit_code == 1
    assert last_line(result.output) == "1 passed, 1 failed"


def test_fail_fast_stops_after_the_first_failure(write, tmp_path: Path) -> None:
    write(FAILING, "a/1.yml")
    write(PASSING, "a/2.yml")
    result = run_cli(tmp_path / "a", "--commands", "oracle", "--fail-fast")
    assert last_line(result.output) == "0 passed, 1 failed"


def test_no_tests_found_is_exit_code_1(tmp_path: Path) -> None:
    result = run_cli(tmp_path)
    assert result.exit_code == 1
    assert f"no tests found in {tmp_path}" in result.output


def test_default_path_is_tests_when_it_holds_e2e_files_else_e2e_tests(tmp_path: Path) -> None:
    project = tmp_path / "bank"
    shutil.copytree(BANK, project)
    (project / "e2e_tests").mkdir()
    (project / "e2e_tests" / "a.yml").write_text(STUBS + PASSING)
    (project / "tests").mkdir()
    (project / "tests" / "unit.yml").write_text("not: e2e\n")
    runner = CliRunner()
    result = runner.invoke(app, ["test", "e2e", "--project", str(project), "--commands", "oracle"])
    assert last_line(result.output) == "1 passed, 0 failed"
    (project / "tests" / "b.yml").write_text(STUBS + FAILING)
    result = runner.invoke(app, ["test", "e2e", "--project", str(project), "--commands", "oracle"])
    assert last_line(result.output) == "0 passed, 1 failed"


def test_junit_xml_and_e2e_results(write, tmp_path: Path) -> None:
    path = write(PASSING + FAILING.replace("test_cases:\n", ""))
    junit = tmp_path / "out" / "junit.xml"
    results = tmp_path / "results"
    result = run_cli(path, "--commands", "oracle", "--junit-xml", junit, "-o", results)
    assert result.exit_code == 1

    suites = ElementTree.parse(junit).getroot()
    assert suites.tag == "testsuites" and suites.get("tests") == "2" and suites.get("failures") == "1"
    cases = suites.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["passes", "fails"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "'utter_ask_amount' was not uttered in this turn"
    assert "- bot: utter_ask_amount" in (failure.text or "")

    passed = yaml.safe_load((results / "e2e_results_passed.yml").read_text())
    failed = yaml.safe_load((results / "e2e_results_failed.yml").read_text())
    assert [r["name"] for r in passed["test_results"]] == ["passes"]
    [entry] = failed["test_results"]
    assert entry["name"] == "fails" and entry["pass_status"] is False
    assert "- bot: utter_ask_amount" in entry["difference"]


def test_the_final_line_is_plain_without_a_terminal(write) -> None:
    result = run_cli(write(FAILING), "--commands", "oracle")
    assert "\x1b[" not in result.output
    assert last_line(result.output) == "0 passed, 1 failed"
