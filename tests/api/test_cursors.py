"""Keyset cursors of GET /jobs and GET /jobs/{job_id}/runs, next to the guide's pages."""

from __future__ import annotations

import httpx

from tests.conftest import unique_name


async def create(api: httpx.AsyncClient, name: str) -> str:
    created = await api.post(
        "/jobs",
        json={
            "name": name,
            "image": "trainer:latest",
            "command": ["true"],
            "schedule": "0 3 1 1 *",
        },
    )
    assert created.status_code == 201, created.text
    job_id: str = created.json()["job_id"]
    return job_id


async def test_cursor_pages_cover_every_job_once_while_jobs_are_created(
    api: httpx.AsyncClient,
) -> None:
    prefix = unique_name("cursor")
    original = {await create(api, f"{prefix}-{i}") for i in range(5)}
    first = await api.get("/jobs", params={"name": prefix, "page_size": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["page"] == 1 and body["page_size"] == 2 and body["total"] == 5
    seen = [job["job_id"] for job in body["jobs"]]
    cursor = body["next_cursor"]
    added: set[str] = set()
    while cursor:
        added.add(await create(api, f"{prefix}-new{len(added)}"))
        page = await api.get("/jobs", params={"name": prefix, "page_size": 2, "cursor": cursor})
        assert page.status_code == 200, page.text
        seen += [job["job_id"] for job in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
    assert sorted(seen) == sorted(original) and len(seen) == len(set(seen))
    assert not added & set(seen), "jobs created meanwhile sort before the cursor"
    # The guide's pages are unchanged: page 2 of 2 is the third and fourth newest.
    paged = (await api.get("/jobs", params={"name": prefix, "page": 2, "page_size": 2})).json()
    assert paged["page"] == 2 and paged["total"] == 5 + len(added)
    for job_id in original | added:
        assert (await api.delete(f"/jobs/{job_id}")).status_code == 204


async def test_a_cursor_not_handed_out_is_a_400(api: httpx.AsyncClient) -> None:
    job_id = await create(api, unique_name("badcursor"))
    try:
        for path in ("/jobs", f"/jobs/{job_id}/runs"):
            for cursor in ("not-a-cursor", "WyJ4IiwiMjAyNS0wMS0wMSIsImEiXQ"):
                answer = await api.get(path, params={"cursor": cursor})
                assert answer.status_code == 400, (path, cursor, answer.text)
                assert answer.json()["error_type"] == "ValidationError"
        # A jobs cursor is refused by the runs list, too.
        listed = (await api.get("/jobs", params={"page_size": 1})).json()
        assert listed["next_cursor"]
        runs = await api.get(f"/jobs/{job_id}/runs", params={"cursor": listed["next_cursor"]})
        assert runs.status_code == 400
        empty = (await api.get(f"/jobs/{job_id}/runs")).json()
        assert empty["runs"] == [] and empty["total"] == 0 and empty["next_cursor"] is None
    finally:
        await api.delete(f"/jobs/{job_id}")
