"""The CLI never prints control characters, whatever a job row holds."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from cli.render import printable, printable_lines
from core.settings import Settings
from store.db import create_engine, create_sessionmaker
from store.models import Job
from tests.cli.test_cli import orchestrator
from tests.conftest import unique_name, wait_for_status

HOSTILE = "x\x1b[2J\x1b]0;owned\x07\r\u202egpj.exe\x9b"


async def test_jobs_list_and_show_escape_what_a_row_holds(
    live_url: str, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as api:
        created = await api.post(
            "/jobs",
            json={
                "name": unique_name(),
                "image": "t:1",
                "command": ["true"],
                "schedule": "0 0 1 1 *",
            },
        )
        job_id = created.json()["job_id"]
    # A row written before the API refused such names (or by hand in SQL).
    engine = create_engine(settings.sqlalchemy_url)
    async with create_sessionmaker(engine)() as session:
        await session.execute(
            update(Job).where(Job.job_id == job_id).values(name=HOSTILE, error_message=HOSTILE)
        )
        await session.commit()
    await engine.dispose()
    try:
        for args in (["jobs", "list"], ["jobs", "get", job_id]):
            shown = await orchestrator(*args, url=live_url)
            assert shown.returncode == 0, shown.stderr
            assert not any(ch in shown.stdout for ch in "\x1b\x07\r\u202e\x9b"), repr(shown.stdout)
            assert "\\x1b[2J" in shown.stdout
    finally:
        async with httpx.AsyncClient(base_url=live_url) as api:
            await api.delete(f"/jobs/{job_id}")


def test_printable_helpers() -> None:
    assert printable({"a": [HOSTILE]}) == {"a": [printable(HOSTILE)]}
    assert "\x1b" not in printable(HOSTILE)
    assert printable_lines(b"a\x1b[31mb\tc\n\xe2\x80\xaed") == b"a[31mb\tc\nd"


async def test_metric_names_a_trainer_chose_are_printed_escaped(
    live_url: str, api: httpx.AsyncClient, busybox_image: str
) -> None:
    # JSON escapes in the trainer's output: the metric's name holds ESC, a clear-screen and
    # a right-to-left override once parsed.
    reports = [
        f'PROGRESS {{"step": {step}, "metrics": {{"\\u001b[2Jbad\\u202e": {step}.0}}}}'
        for step in (1, 2)
    ]
    body = {
        "name": unique_name("hostile-metrics"),
        "image": busybox_image,
        "command": ["sh", "-c", "printf '%s\\n' " + " ".join(f"'{r}'" for r in reports)],
    }
    created = await api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    job = await wait_for_status(api, job_id, {"completed", "failed"})
    assert job["status"] == "completed", job
    metrics = (await api.get(f"/jobs/{job_id}/runs/{job['latest_run_id']}/metrics")).json()
    assert [series["name"] for series in metrics["series"]] == ["\x1b[2Jbad\u202e"]

    shown = await orchestrator("metrics", job_id, url=live_url, env={"COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    assert not any(ch in shown.stdout for ch in "\x1b\u202e"), repr(shown.stdout)
    assert "\\x1b[2Jbad\\u202e" in shown.stdout
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 204
