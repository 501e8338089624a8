"""The sandbox the worker runs workflow code in.

Every new run imports its workflow's modules afresh into a sandbox of its own, so that no run
sees global state another one changed. Modules that hold no such state and whose code is
deterministic are better imported once, by the worker, and passed through: the contract types
(pydantic models, whose classes are costly to build), the failure wording, and the workflow's
helper modules for admission and attempts, which hold no module state (constants, functions
and a class each run makes its own instance of). The package ``workflows`` imports its models
when it is imported, outside any ``imports_passed_through`` block, so without this each run
rebuilt every model: 7 % of the worker's CPU in the start-path fan-out, and the first workflow
task of a run took about 25 ms rather than 12 (docs/benchmarks.md).

What is passed through is not checked by the sandbox's restrictions (``datetime.now()`` and
the like would not be refused there): those modules keep to workflow code's rules by review,
and the replay corpus (tests/replay) replays every change to them.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES = (
    "workflows.models",
    "workflows.failure_messages",
    "workflows.admission",
    "workflows.attempts",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The runner for TrainingJobWorkflow, in workers and in replays alike."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
