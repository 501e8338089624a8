"""``python -m api``: serve the REST API with uvicorn on API_HOST:API_PORT (127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from core.logging import configure_logging
from core.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    # log_config=None: uvicorn's own lines go through the same handler (and LOG_FORMAT).
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None
    )


if __name__ == "__main__":
    main()
