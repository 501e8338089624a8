"""``python -m api``: serve the REST API with uvicorn on API_HOST:API_PORT (127.0.0.1:8000).

Refuses to start on an address beyond this host while auth is off, unless
ALLOW_UNAUTHENTICATED=true says so (then it warns at every start).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from api.app import create_app
from api.exposure import exposure_problem, exposure_warning
from core.logging import configure_logging
from core.settings import Settings

logger = logging.getLogger("api")


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    if problem := exposure_problem(settings):
        logger.error(problem)
        sys.exit(2)
    if warning := exposure_warning(settings):
        logger.warning(warning)
    # log_config=None: uvicorn's own lines go through the same handler (and LOG_FORMAT).
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None
    )


if __name__ == "__main__":
    main()
