"""``python -m api``: serve the REST API with uvicorn on API_HOST:API_PORT (127.0.0.1:8000)."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from jobs.config import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


if __name__ == "__main__":
    main()
