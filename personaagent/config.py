"""Settings: which LM, which embedder, which memory store, and where files go.

Precedence, highest first: explicit arguments, ``PERSONAAGENT_*`` environment variables, the TOML
file named by ``PERSONAAGENT_CONFIG`` (or ``<home>/config.toml``), then the defaults below, which
run fully offline on the embedded local LM and embedder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from personaagent.errors import ConfigError, InvalidRecord
from personaagent.ingest import read_user_text
from personaagent.records import describe_validation_error

__all__ = ["Settings", "load_settings", "LOCAL", "MEMORY", "DEFAULT_LOCAL_MODEL"]

#: The value of ``lm`` / ``embedder`` that selects the embedded offline model.
LOCAL = "local"
#: The packaged model ``lm="local"`` runs (personaagent.runtime.models lists them all). Chosen by
#: measurement: RESULTS.md, "Choosing the local model".
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"
#: The value of ``store`` that keeps memory in process only.
MEMORY = ":memory:"


def _read_config(path: Path) -> dict[str, Any]:
    """The settings in a TOML config file ({} if there is none).

    Read like every file a user gives (``ingest.read_user_text``): Windows editors put a UTF-8
    byte-order mark before it, which TOML parsers reject.

    Raises:
        ConfigError: the file is not UTF-8 or not TOML; the message names the file.
    """
    if not path.is_file():
        return {}
    # tomllib is in the standard library from Python 3.11; before, its original tomli.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(read_user_text(path))
    except InvalidRecord as exc:
        raise ConfigError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the file or point PERSONAAGENT_CONFIG elsewhere") from None


def _default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "personaagent"


class Settings(BaseSettings):
    """Everything personaagent needs to know about its environment.

    Args:
        home: Folder for the embedded store, personas, profiles and traces. Defaults to
            ``$XDG_DATA_HOME/personaagent`` (``~/.local/share/personaagent``).
        lm: ``"local"`` for the default embedded model, ``"local/<name>"`` for a named one
            (``local/qwen2.5-coder-1.5b-instruct``, ``local/qwen2.5-coder-0.5b-instruct``,
            ``local/smollm2-135m-instruct``), or any DSPy/litellm model string such as
            ``"openai/gpt-4o-mini"``, ``"anthropic/claude-3-5-sonnet-20240620"`` or
            ``"ollama_chat/llama3.2"``. Defaults to ``"local"``.
        lm_api_base: Base URL of an OpenAI-compatible server, used with an ``openai/...`` model.
        lm_api_key: API key for the hosted model (litellm's own env vars work too).
        lm_max_tokens: Cap on generated tokens per call. Defaults to 256.
        lm_temperature: Sampling temperature. Defaults to 0.0, so runs are repeatable.
        local_model_path: A GGUF file to run instead of the packaged model.
        local_context_tokens: Context window for the local model. Defaults to 4096.
        embedder: ``"local"`` for the packaged all-MiniLM-L6-v2 (int8 ONNX), or a fastembed model
            name (needs network on first use). Defaults to ``"local"``.
        store: Where episodic memory lives: ``None`` for ``<home>/store`` (embedded Qdrant Edge),
            another folder, ``":memory:"``, or a Qdrant server URL (``http://...``).
        qdrant_api_key: API key for a Qdrant server.
        api_keys: Bearer keys that `personaagent serve` accepts, comma-separated
            (``PERSONAAGENT_API_KEYS="key1,key2"``). Never logged or returned.
        telemetry: Export OpenTelemetry spans of asks, memory and alignment steps, to the
            exporter the standard ``OTEL_*`` variables choose. Defaults to False.
        telemetry_hash_user_ids: Put a hash of the user id in spans instead of the id.
            Defaults to False.
    """

    model_config = SettingsConfigDict(env_prefix="PERSONAAGENT_", extra="forbid", validate_default=True)

    home: Path = Field(default_factory=_default_home)
    lm: str = LOCAL
    lm_api_base: str | None = None
    lm_api_key: SecretStr | None = None
    lm_max_tokens: int = Field(default=256, ge=1, le=32768)
    lm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    local_model_path: Path | None = None
    local_context_tokens: int = Field(default=4096, ge=256, le=131072)
    embedder: str = LOCAL
    store: str | None = None
    qdrant_api_key: SecretStr | None = None
    api_keys: SecretStr | None = None
    telemetry: bool = False
    telemetry_hash_user_ids: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_as_one_string(cls, value: Any) -> Any:
        # A config file may list the keys; the environment gives them comma-separated.
        return ",".join(value) if isinstance(value, (list, tuple)) else value

    @field_validator("lm")
    @classmethod
    def _lm_names_a_provider(cls, value: str) -> str:
        value = value.strip()
        if value != LOCAL and "/" not in value:
            raise ValueError(
                f"{value!r} is not a model string; use 'local' or '<provider>/<model>', e.g. 'openai/gpt-4o-mini'"
            )
        return value

    @field_validator("embedder")
    @classmethod
    def _embedder_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("embedder must be 'local' or a fastembed model name")
        return value.strip()

    @field_validator("store")
    @classmethod
    def _store_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("store must be a folder, ':memory:' or a Qdrant URL")
        return value

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        # Checked here, not only by the CLI's --home: PERSONAAGENT_HOME and the config file set
        # it too, and a file there failed later, in whichever command first made a subfolder.
        home = value.expanduser()
        if home.exists() and not home.is_dir():
            raise ValueError(f"{home} is a file, not a folder; give a folder for the store, personas and traces")
        return home

    @field_validator("local_model_path")
    @classmethod
    def _model_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"no model file at {value}")
        return value.expanduser() if value is not None else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is looked up when Settings() is built, never at import time.
        config_file = os.environ.get("PERSONAAGENT_CONFIG")
        if config_file is None:
            # The home given as an argument (the CLI's --home) wins over the environment's, as it
            # does for every other setting, so its config.toml is the one read.
            given = getattr(init_settings, "init_kwargs", {}).get("home")
            home = str(given) if given is not None else os.environ.get("PERSONAAGENT_HOME")
            config_file = str(Path(home).expanduser() / "config.toml") if home else str(_default_home() / "config.toml")
        elif not Path(config_file).is_file():
            raise ConfigError(f"PERSONAAGENT_CONFIG names {config_file}, which does not exist")
        return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=_read_config(Path(config_file))))

    @property
    def api_key_values(self) -> tuple[str, ...]:
        """The accepted API keys, one per comma-separated entry, blanks dropped."""
        if self.api_keys is None:
            return ()
        return tuple(key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip())

    # --- derived locations ------------------------------------------------------------------

    @property
    def store_location(self) -> str:
        """The store as a folder path, ``":memory:"`` or a URL."""
        return self.store if self.store is not None else str(self.home / "store")

    @property
    def local_model(self) -> str | None:
        """The packaged local model ``lm`` selects (``"local"`` means the default), or None for
        a hosted model."""
        if self.lm == LOCAL:
            return DEFAULT_LOCAL_MODEL
        return self.lm.removeprefix(LOCAL + "/") if self.lm.startswith(LOCAL + "/") else None

    @property
    def max_query_chars(self) -> int:
        """Longest query accepted: half the local model's context (~3 chars a token), since the
        persona, memories and the adapter's format share the window; hosted models get 200k."""
        return self.local_context_tokens * 3 // 2 if self.local_model is not None else 200_000

    @property
    def personas_dir(self) -> Path:
        return self.home / "personas"

    @property
    def profiles_dir(self) -> Path:
        return self.home / "profiles"

    @property
    def traces_dir(self) -> Path:
        return self.home / "traces"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation failures into one readable ConfigError.

    Arguments that are ``None`` are ignored, so CLI options that were not given fall through to
    the environment and the config file.
    """
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None
