"""``Idempotency-Key`` on the POSTs that start things: a repeat gets the first answer.

A client that did not see an answer (a timeout, a dropped connection) sends the same request
with the same key again and gets the answer of the first, without a second job or run. The
key is the caller's own (two API keys never share one); a successful answer is kept for 24
hours in SQL, so every API replica sees it. The same key with another method, path or body is
409 ``IdempotencyConflict``, and so is a repeat while the first is still being answered. A
request that fails keeps no record: sending it again retries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import PrincipalDep
from core.errors import IdempotencyConflict
from store import idempotency

Answer = TypeVar("Answer", bound=BaseModel)

IDEMPOTENCY_HEADER = "Idempotency-Key"


class Idempotency:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        actor: str,
        key: str | None,
        request_hash: str,
    ) -> None:
        self._sessions = sessions
        self._actor = actor
        self._key = key
        self._hash = request_hash

    async def run(
        self, model: type[Answer], action: Callable[[], Awaitable[Answer]], status_code: int = 200
    ) -> Answer:
        """``action``'s answer (sent with ``status_code``), or the one recorded for this key."""
        if self._key is None:
            return await action()
        async with self._sessions() as session:
            held = await idempotency.claim(session, self._actor, self._key, self._hash)
        if held is not None:
            if held.request_hash != self._hash:
                raise IdempotencyConflict(
                    f"{IDEMPOTENCY_HEADER} {self._key!r} was used for another request "
                    "in the last 24 hours"
                )
            if held.response is None:
                raise IdempotencyConflict(
                    f"a request with {IDEMPOTENCY_HEADER} {self._key!r} is still being answered"
                )
            return model.model_validate(held.response)
        try:
            answer = await action()
        except BaseException:
            async with self._sessions() as session:
                await idempotency.release(session, self._actor, self._key)
            raise
        async with self._sessions() as session:
            await idempotency.complete(
                session, self._actor, self._key, status_code, answer.model_dump(mode="json")
            )
        return answer


async def get_idempotency(
    request: Request,
    caller: PrincipalDep,
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            min_length=1,
            max_length=255,
            pattern=r"^[!-~]+$",
            description="Any unique string (a UUID); a repeat within 24 h gets the first answer.",
        ),
    ] = None,
) -> Idempotency:
    body = await request.body()
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body).hexdigest()
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return Idempotency(sessions, caller.name, key, digest)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
