"""``/logs`` from an API that shares no disk with the worker: only Temporal and the database."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from core.settings import Settings
from tests.activities.test_training_runs import create, sh
from tests.conftest import api_client, make_settings, wait_for_status


async def test_tail_and_follow_come_from_the_database(
    settings: Settings, worker: None, temporal_client: Client, busybox_image: str, tmp_path: Path
) -> None:
    # Another host's API: its own data directory, the worker's database.
    elsewhere = tmp_path / "api-host"
    api_settings = make_settings(temporal_client, elsewhere, database_url=settings.sqlalchemy_url)
    script = (
        'for i in 1 2 3 4 5; do echo "attempt $ATTEMPT line $i"; sleep 0.3; done; '
        '[ "$ATTEMPT" = 2 ] || exit 4'
    )
    async with api_client(api_settings) as api:
        job = await create(api, image=busybox_image, command=sh(script), max_retries=1)
        job_id = job["job_id"]
        await wait_for_status(api, job_id, {"running"})
        streamed = b""
        async with api.stream("GET", f"/jobs/{job_id}/logs", params={"follow": True}) as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes():
                streamed += chunk
        done = await wait_for_status(api, job_id, {"completed", "failed"})
        assert done["status"] == "completed"
        text = streamed.decode()
        assert "--- attempt 2 ---" in text
        for attempt in (1, 2):
            for line in range(1, 6):
                assert f"attempt {attempt} line {line}\n" in text
        tail = (await api.get(f"/jobs/{job_id}/logs", params={"tail": 3})).text
        assert tail.splitlines() == ["attempt 2 line 3", "attempt 2 line 4", "attempt 2 line 5"]
        whole = (await api.get(f"/jobs/{job_id}/logs")).text
        assert whole.startswith("--- attempt 1 ---\nattempt 1 line 1\n")
        assert whole.endswith("attempt 2 line 5\n")
    # Nothing of the run was read from, or written to, this API's disk.
    assert not (elsewhere / "logs").exists()

    # The same API reading files instead finds none: the database is what served them.
    files_settings = make_settings(
        temporal_client, elsewhere, database_url=settings.sqlalchemy_url, log_storage="files"
    )
    async with api_client(files_settings) as api:
        assert (await api.get(f"/jobs/{job_id}/logs")).text == ""
