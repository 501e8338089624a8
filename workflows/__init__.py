"""Workflows and their contract types; SDK clients import from here."""

from workflows.models import TrainingRunInput, TrainingRunResult
from workflows.training import TrainingJobWorkflow

__all__ = ["TrainingJobWorkflow", "TrainingRunInput", "TrainingRunResult"]
