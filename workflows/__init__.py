"""Workflows and their contract types; SDK clients import from here.

The workflow class is imported on first use, so the store and the API can read the contract
(``workflows.models``) without loading the Temporal SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflows.models import TrainingRunInput, TrainingRunResult

if TYPE_CHECKING:
    from workflows.training import TrainingJobWorkflow

__all__ = ["TrainingJobWorkflow", "TrainingRunInput", "TrainingRunResult"]


def __getattr__(name: str) -> Any:
    if name == "TrainingJobWorkflow":
        from workflows.training import TrainingJobWorkflow

        return TrainingJobWorkflow
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")
