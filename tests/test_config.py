"""Settings: defaults, precedence (arguments > environment > config file), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from personaagent.config import DEFAULT_LOCAL_MODEL, LOCAL, MEMORY, Settings, load_settings
from personaagent.errors import ConfigError


def test_defaults_are_the_offline_embedded_models(_isolated_home: Path):
    settings = load_settings()
    assert settings.lm == LOCAL and settings.embedder == LOCAL
    assert settings.home == _isolated_home
    assert settings.store_location == str(_isolated_home / "store")
    assert settings.traces_dir == _isolated_home / "traces"
    assert settings.local_context_tokens == 4096 and settings.max_query_chars == 4096 * 3 // 2
    assert settings.local_model == DEFAULT_LOCAL_MODEL == "qwen2.5-coder-1.5b-instruct"


@pytest.mark.parametrize(
    ("lm", "local_model"),
    [
        ("local", "qwen2.5-coder-1.5b-instruct"),
        ("local/smollm2-135m-instruct", "smollm2-135m-instruct"),
        (" local/qwen2.5-coder-0.5b-instruct ", "qwen2.5-coder-0.5b-instruct"),
        ("openai/gpt-4o-mini", None),
    ],
)
def test_lm_names_a_packaged_local_model_or_a_hosted_one(lm: str, local_model: str | None):
    settings = Settings(lm=lm)
    assert settings.local_model == local_model
    assert settings.max_query_chars == (6144 if local_model else 200_000)


def test_environment_overrides_the_config_file_and_arguments_override_both(_isolated_home, monkeypatch):
    (_isolated_home / "config.toml").write_text('lm = "openai/from-file"\nembedder = "file-embedder"\nlm_max_tokens = 99\n')
    monkeypatch.setenv("PERSONAAGENT_LM", "anthropic/from-env")
    settings = load_settings()
    assert settings.lm == "anthropic/from-env"  # env beats file
    assert settings.embedder == "file-embedder"  # file beats default
    assert settings.lm_max_tokens == 99
    assert load_settings(lm="ollama_chat/from-arg").lm == "ollama_chat/from-arg"  # argument beats env
    assert load_settings(lm=None).lm == "anthropic/from-env"  # an option not given falls through
    assert settings.max_query_chars == 200_000  # a hosted model's context is not the local one's


def test_config_file_named_by_environment(tmp_path, monkeypatch):
    config = tmp_path / "team.toml"
    config.write_text(f'store = "{MEMORY}"\n')
    monkeypatch.setenv("PERSONAAGENT_CONFIG", str(config))
    assert load_settings().store_location == MEMORY
    monkeypatch.setenv("PERSONAAGENT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml, which does not exist"):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lm": "gpt4"}, "lm: 'gpt4' is not a model string"),
        ({"lm_max_tokens": 0}, "lm_max_tokens: Input should be greater than or equal to 1"),
        ({"lm_temperature": 3}, "lm_temperature: Input should be less than or equal to 2"),
        ({"local_context_tokens": 64}, "local_context_tokens"),
        ({"local_model_path": "/nowhere/model.gguf"}, "no model file at /nowhere/model.gguf"),
        ({"store": "  "}, "store must be a folder"),
        ({"embedder": ""}, "embedder must be 'local'"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_values_give_one_readable_error(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(**overrides)
    assert str(raised.value).startswith("invalid settings: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_bad_environment_value_names_the_field(monkeypatch):
    monkeypatch.setenv("PERSONAAGENT_LM_MAX_TOKENS", "lots")
    with pytest.raises(ConfigError, match="lm_max_tokens"):
        load_settings()


def test_secrets_are_not_shown():
    settings = Settings(lm="openai/x", lm_api_key="sk-secret")
    assert "sk-secret" not in repr(settings)
    assert settings.lm_api_key.get_secret_value() == "sk-secret"


def test_a_home_that_is_a_file_is_one_error_however_it_is_given(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from personaagent import cli

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(ConfigError, match=f"home: {a_file} is a file, not a folder"):
        load_settings(home=a_file)
    history = tmp_path / "history.jsonl"
    history.write_text('{"user_id": "u1", "query": "q", "response": "r"}\n')
    monkeypatch.setenv("PERSONAAGENT_HOME", str(a_file))
    for command in (["ingest", str(history)], ["persona", "show", "u1"], ["trace", "list"]):
        result = CliRunner().invoke(cli.cli, command)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"home: {a_file} is a file, not a folder" in result.output
    assert a_file.read_text() == "keep me"
