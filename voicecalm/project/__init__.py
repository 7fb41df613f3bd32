"""Read and validate a project folder into immutable models."""

from voicecalm.project.domain import Domain, Response, Slot
from voicecalm.project.flows import Flow, Step
from voicecalm.project.loader import AssistantConfig, Project, load_project
from voicecalm.project.problems import Location, Problem, ProjectError, Severity

__all__ = [
    "AssistantConfig",
    "Domain",
    "Flow",
    "Location",
    "Problem",
    "Project",
    "ProjectError",
    "Response",
    "Severity",
    "Slot",
    "Step",
    "load_project",
]
