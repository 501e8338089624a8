"""One settings class for the API, the worker and the dev stack (environment or ``.env``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob, with the defaults `make run` uses on a fresh machine."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Path(".data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: SQLite file under DATA_DIR.",
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "training-jobs"
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    enable_api_auth: bool = False
    api_key: SecretStr | None = None

    runtime: Literal["docker", "process"] = "docker"
    checkpoint_root: Path | None = Field(
        default=None, description="Root of all checkpoint paths; default DATA_DIR/checkpoint-root."
    )
    container_network: str = "bridge"
    image_pull_policy: Literal["if-not-present", "always", "never"] = "if-not-present"

    retry_backoff_seconds: float = Field(default=10.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=600.0, ge=0)
    heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    infra_max_attempts: int = Field(default=5, ge=1)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _auth_needs_a_key(self) -> Settings:
        if self.enable_api_auth and not (self.api_key and self.api_key.get_secret_value()):
            raise ValueError("ENABLE_API_AUTH=true needs API_KEY to be set")
        return self

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'orchestrator.db').resolve()}"

    @cached_property
    def checkpoint_root_dir(self) -> Path:
        return (self.checkpoint_root or self.data_dir / "checkpoint-root").resolve()

    @cached_property
    def log_dir(self) -> Path:
        return (self.data_dir / "logs").resolve()
