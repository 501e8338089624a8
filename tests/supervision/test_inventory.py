"""A worker's inventory: configured ids and sizes win, else detection (no GPU here)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings
from supervision.inventory import detect_gpus, inventory_of


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, worker_name="w1", task_queue="q", **values)  # type: ignore[call-arg, arg-type]


def test_configured_inventory() -> None:
    inventory = inventory_of(settings(worker_gpus="0, 1,3", worker_cpus=6, worker_memory="2g"))

    assert inventory.gpus == ["0", "1", "3"]
    assert inventory.cpus == 6
    assert inventory.memory_bytes == 2 * 1024**3
    assert inventory.max_attempts == 3 + 24 * 6
    assert inventory.task_queue == "q-w1" and inventory.pool == "q"
    assert inventory.threads == inventory.max_attempts * 4 + 8


def test_empty_gpu_list_means_none_and_detection_finds_none_without_a_driver() -> None:
    assert inventory_of(settings(worker_gpus="")).gpus == []
    # This machine has no NVIDIA driver: NVML fails to load, and detection says so calmly.
    assert detect_gpus() == []
    detected = inventory_of(settings())
    assert detected.gpus == [] and detected.cpus >= 1 and detected.memory_bytes > 2**20
    assert inventory_of(settings(worker_max_attempts=2)).max_attempts == 2


def test_bad_memory_size_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a size"):
        settings(worker_memory="lots")
