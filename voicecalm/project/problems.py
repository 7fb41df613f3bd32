"""Located problems found while loading a project, and the one error type the loader raises."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Location:
    file: Path
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    location: Location | Path | None
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location is not None else ""
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{where}{prefix}{self.message}"

    def sort_key(self) -> tuple[str, int, int]:
        location = self.location
        if isinstance(location, Location):
            return (str(location.file), location.line, location.column)
        return (str(location or ""), 0, 0)


class ProjectError(Exception):
    """A project that cannot be loaded; carries every problem found, errors and warnings."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__("\n".join(str(p) for p in self.errors))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)


class ProblemLog:
    """Collects problems so that one run reports all of them, not just the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, location: Location | Path | None, message: str) -> None:
        self.problems.append(Problem(location, message))

    def warning(self, location: Location | Path | None, message: str) -> None:
        self.problems.append(Problem(location, message, Severity.WARNING))

    @property
    def has_errors(self) -> bool:
        return any(p.severity is Severity.ERROR for p in self.problems)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise ProjectError(self.problems)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)
