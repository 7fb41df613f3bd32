from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicecalm.project import Project, ProjectError, load_project

BASE_DOMAIN = """
actions:
  - action_check_limit
responses:
  utter_ask_amount:
    - text: How much?
  utter_ask_account:
    - text: Which account?
  utter_ask_confirmed:
    - text: Shall I go ahead?
  utter_ask_recipient:
    - text: Who to?
  utter_done:
    - text: Done.
  utter_too_much:
    - text: That is too much.
slots:
  amount:
    type: float
    min_value: 0
    max_value: 10000
  account:
    type: categorical
    values: [checking, savings]
  confirmed:
    type: bool
  recipient:
    type: text
  pin:
    type: text
"""

MARKER = re.compile(r"#\s*<-\s*(.*)$")


@dataclass
class ExpectedProblem:
    file: str
    line: int
    message: str


class ProjectFactory:
    """Writes small projects; a line ending in `# <- text` expects a problem there mentioning text."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.expected: list[ExpectedProblem] = []

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text).lstrip("\n")
        for number, line in enumerate(text.splitlines(), start=1):
            marker = MARKER.search(line)
            if marker:
                self.expected.append(ExpectedProblem(relative, number, marker.group(1).strip()))
        path.write_text(text)
        return path

    def project(self, flows: str = "", domain: str = BASE_DOMAIN, config: str = "recipe: default.v1\n") -> Path:
        self.write("config.yml", config)
        self.write("domain.yml", domain)
        if flows:
            self.write("data/flows.yml", flows)
        return self.root

    def load(self) -> Project:
        return load_project(self.root)

    def errors(self) -> ProjectError:
        with pytest.raises(ProjectError) as caught:
            load_project(self.root)
        return caught.value

    def assert_expected_errors(self) -> ProjectError:
        """Every marked line has an error mentioning its text, and there is no unmarked error."""
        assert self.expected, "the test marks no expected problem"
        error = self.errors()
        found = [(str(p.location.file), p.location.line, p.message) for p in error.errors if hasattr(p.location, "line")]
        for expected in self.expected:
            matches = [f for f in found if f[0] == expected.file and f[1] == expected.line and expected.message in f[2]]
            assert matches, f"no error at {expected.file}:{expected.line} mentioning {expected.message!r}; got:\n{error}"
        unexpected = [
            p for p in error.errors
            if not any(
                hasattr(p.location, "line") and str(p.location.file) == e.file and p.location.line == e.line
                for e in self.expected
            )
        ]
        assert not unexpected, "unexpected errors:\n" + "\n".join(map(str, unexpected))
        return error


@pytest.fixture
def factory(tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(tmp_path)
