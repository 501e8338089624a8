"""A small, real training loop that follows the orchestrator's trainer contract.

It fits y = 3x + 2 with stochastic gradient descent, in pure Python, and:

* reports progress as ``PROGRESS {json}`` lines (step, total, epoch, metrics);
* writes a checkpoint every CHECKPOINT_EVERY steps into CHECKPOINT_DIR (atomically: a
  temporary file renamed into place) and announces it with ``CHECKPOINT {json}``;
* resumes from RESUME_FROM when the orchestrator gives one (a retry after a crash).

Settings (environment): TOTAL_STEPS (200), CHECKPOINT_EVERY (20), STEP_SECONDS (0.05),
LEARNING_RATE (0.05), SEED (7).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path


def emit(kind: str, payload: dict[str, object]) -> None:
    sys.stdout.write(f"{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def load(resume_from: str | None) -> tuple[int, float, float]:
    if not resume_from:
        return 0, 0.0, 0.0
    state = json.loads(Path(resume_from).read_text())
    sys.stdout.write(f"resumed from step {state['step']} ({resume_from})\n")
    return int(state["step"]), float(state["w"]), float(state["b"])


def save(directory: Path, step: int, w: float, b: float) -> None:
    final = directory / f"ckpt-{step:06d}.json"
    partial = directory / f".{final.name}.tmp"
    partial.write_text(json.dumps({"step": step, "w": w, "b": b}))
    os.replace(partial, final)
    emit("CHECKPOINT", {"path": final.name, "step": step})


def main() -> int:
    total = int(os.environ.get("TOTAL_STEPS", "200"))
    every = int(os.environ.get("CHECKPOINT_EVERY", "20"))
    pause = float(os.environ.get("STEP_SECONDS", "0.05"))
    rate = float(os.environ.get("LEARNING_RATE", "0.05"))
    checkpoint_dir = Path(os.environ.get("CHECKPOINT_DIR", "checkpoints"))
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(int(os.environ.get("SEED", "7")))

    step, w, b = load(os.environ.get("RESUME_FROM"))
    sys.stdout.write(f"attempt {os.environ.get('ATTEMPT', '?')} starts at step {step + 1}\n")
    while step < total:
        step += 1
        x = rng.uniform(-1, 1)
        error = (w * x + b) - (3 * x + 2)
        w -= rate * error * x
        b -= rate * error
        emit("PROGRESS", {"step": step, "total": total, "metrics": {"loss": error * error}})
        if step % every == 0 or step == total:
            save(checkpoint_dir, step, w, b)
        time.sleep(pause)
    sys.stdout.write(f"done: w={w:.3f} b={b:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
