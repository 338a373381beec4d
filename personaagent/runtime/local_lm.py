"""The LM DSPy runs on: an embedded chat model through llama.cpp, or any hosted model.

The embedded models (:mod:`personaagent.runtime.models`) are small, so they do not reliably
follow DSPy's ``[[ ## field ## ]]`` chat format. They fill in JSON, though, when llama.cpp
constrains sampling with a grammar built from the JSON schema that DSPy's :class:`dspy.JSONAdapter`
puts on every request. That is what :class:`LlamaCppEngine` does, behind DSPy 3.4's custom-engine
contract (``dspy.LM(model, engine=...)`` with ``complete(Request) -> Response``).

llama.cpp is built with its CPU backend as runtime-loaded variants (``GGML_BACKEND_DL`` +
``GGML_CPU_ALL_VARIANTS``; ``scripts/setup.sh``), so one build runs AVX-512 code on a CPU that
has it and AVX2 or SSE code elsewhere: :func:`load_cpu_backend` picks the variant.

Typical use::

    lm = build_lm(settings)
    with dspy.context(lm=lm, adapter=adapter_for(settings, lm)):
        prediction = dspy.Predict(MySignature)(question="...")
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy
from dspy.lm15 import ContextLengthError, Message, Response, UnsupportedFeatureError, Usage, response_to_events

from personaagent.config import DEFAULT_LOCAL_MODEL, Settings
from personaagent.errors import ModelNotAvailable
from personaagent.runtime.models import resolve_model

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dspy.lm15 import Request

__all__ = [
    "GrammarJSONAdapter",
    "LlamaCppEngine",
    "adapter_for",
    "best_cpu_backend",
    "build_lm",
    "load_cpu_backend",
    "prefix_cache",
]

logger = logging.getLogger(__name__)

_LLAMA_HINT = "run `bash scripts/setup.sh`"
_DEFAULT_SEED = 0
_SERVER_TIMEOUT_SECONDS = 600
#: llama.cpp threads when none are given. Measured in benchmarks/bench_lm.py (RESULTS.md).
DEFAULT_THREADS = 2
#: ggml's CPU variants that use AMX. Some VMs advertise AMX in CPUID but the kernel never grants
#: the tile state, and ggml's own variant scoring does not check the OS ("FIXME" in
#: ggml-cpu/arch/x86/cpu-feats.cpp): the first matmul then dies with "Illegal instruction".
_AMX_VARIANTS = frozenset({"sapphirerapids"})
_backend_lock = threading.Lock()
_cpu_variant: str | None = None


def best_cpu_backend() -> Path | None:
    """The best llama.cpp CPU backend variant this CPU can run, or None for a llama.cpp built
    without variants (its CPU backend linked in).

    Each ``libggml-cpu-<variant>.so`` beside llama.cpp exports a score (0 when the CPU lacks an
    instruction set the variant was built with); the highest score wins, AMX variants excepted
    (see ``_AMX_VARIANTS``). Another process that runs llama.cpp from this install (e.g.
    ``python -m llama_cpp.server``) loads it when given its path in ``GGML_BACKEND_PATH``.

    Raises:
        ModelNotAvailable: llama-cpp-python is missing, or no variant runs on this CPU.
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelNotAvailable(f"the embedded LM needs llama-cpp-python ({exc}); {_LLAMA_HINT}") from None
    lib_dir = _lib_dir(llama_cpp)
    # ggml installs its runtime-loaded backends as executables' neighbours: in the wheel's bin/
    # folder, which lands in site-packages/bin (with LLAMA_CPP_LIB_PATH, only that build counts).
    folders = [lib_dir] if os.environ.get("LLAMA_CPP_LIB_PATH") else [lib_dir, Path(llama_cpp.__file__).parent.parent / "bin"]
    variants = sorted(path for folder in folders for path in folder.glob("libggml-cpu-*.so"))
    if not variants:
        return None
    scored = []
    for path in variants:
        if _variant_name(path) in _AMX_VARIANTS:
            continue
        # Loading a variant runs no code of it; its score function checks CPUID only.
        score_fn = getattr(ctypes.CDLL(str(path)), "ggml_backend_score", None)
        score = int(score_fn()) if score_fn is not None else 0
        if score > 0:
            scored.append((score, path))
    if not scored:
        raise ModelNotAvailable(f"no llama.cpp CPU backend in {lib_dir} runs on this CPU; {_LLAMA_HINT}")
    return max(scored)[1]


def _lib_dir(llama_cpp: Any) -> Path:
    # LLAMA_CPP_LIB_PATH is llama-cpp-python's own setting for loading another llama.cpp build.
    return Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")


def _variant_name(path: Path) -> str:
    return path.name.removeprefix("libggml-cpu-").removesuffix(".so")


def load_cpu_backend() -> str:
    """Register :func:`best_cpu_backend` in this process's llama.cpp; return the variant's name
    (``"built-in"`` without variants). Calling it again returns the variant already loaded.

    Raises:
        ModelNotAvailable: llama-cpp-python is missing, or no variant runs on this CPU.
    """
    global _cpu_variant
    with _backend_lock:
        if _cpu_variant is not None:
            return _cpu_variant
        path = best_cpu_backend()
        if path is None:
            _cpu_variant = "built-in"
            return _cpu_variant
        import llama_cpp

        lib_dir, name = _lib_dir(llama_cpp), _variant_name(path)
        # The copy libllama already loaded, by its soname: a wheel holds libggml.so, .so.0 and
        # .so.0.x as separate files, and opening another one would load a second registry.
        ggml = ctypes.CDLL(str(lib_dir / "libggml.so.0"))
        ggml.ggml_backend_load.restype = ctypes.c_void_p
        ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        # Registered before llama.cpp's first backend init, which then skips its own search (it
        # looks beside the Python executable and in the working folder, never beside the library).
        if not ggml.ggml_backend_load(str(path).encode()):
            raise ModelNotAvailable(f"llama.cpp could not load its CPU backend {path}; {_LLAMA_HINT}")
        logger.info("llama.cpp CPU backend: %s", name)
        _cpu_variant = name
        return _cpu_variant


class LlamaCppEngine:
    """A DSPy engine that runs a GGUF chat model in process with llama.cpp.

    The model loads on the first call, so building an LM is cheap. Calls are serialised with a
    lock, because a ``llama_cpp.Llama`` is not thread-safe and DSPy's parallel executor calls
    from threads. When the request carries a JSON schema (DSPy's JSONAdapter sends one per
    signature), sampling is constrained to it; ``{"type": "json_object"}`` constrains to any JSON
    object; with no response format the model writes free text.

    Args:
        model_path: A GGUF file with a chat template. Defaults to the packaged ``model_name``.
        model_name: A packaged model (:data:`personaagent.runtime.models.LOCAL_MODELS`), used when
            no ``model_path`` is given. Defaults to :data:`~personaagent.runtime.models.DEFAULT_LOCAL_MODEL`.
        context_tokens: Context window in tokens (prompt plus answer). Defaults to 2048.
        threads: CPU threads for llama.cpp. Defaults to :data:`DEFAULT_THREADS`.
        prefix_cache_bytes: RAM for saved KV states whose prefixes later prompts reuse; 0 turns
            the cache off. Defaults to 1 GiB.
        seed: Sampling seed, so runs at temperature > 0 repeat too. Defaults to 0.

    Raises:
        ModelNotAvailable: The model file or package is not installed, or fails its checks.
    """

    # Capability hints DSPy reads off a custom engine (dspy.clients.capabilities): without them
    # the JSONAdapter would never put the output schema on the request.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"response_format", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_name: str = DEFAULT_LOCAL_MODEL,
        context_tokens: int = 2048,
        threads: int | None = None,
        seed: int = _DEFAULT_SEED,
        prefix_cache_bytes: int = 1 << 30,
    ) -> None:
        # Only an explicit path is saved by dump_state; the packaged model is found again on load,
        # because its absolute path differs between environments.
        self._explicit_path = Path(model_path).expanduser() if model_path is not None else None
        self.model_name = model_name
        self.model_path = self._explicit_path or resolve_model(model_name)
        if not self.model_path.is_file():
            raise ModelNotAvailable(f"no model file at {self.model_path}")
        self.context_tokens = context_tokens
        self.threads = threads
        self.seed = seed
        self.prefix_cache_bytes = prefix_cache_bytes
        self._lock = threading.Lock()
        self._llama: Any = None
        self._formatter: Any = None

    # --- the dspy engine contract ------------------------------------------------------------

    def complete(self, request: Request) -> Response:
        """Answer one DSPy request.

        Raises:
            dspy.lm15.ContextLengthError: The prompt plus ``max_tokens`` does not fit in the
                context window. DSPy re-raises it as ``dspy.utils.exceptions.ContextWindowExceededError``.
            dspy.lm15.UnsupportedFeatureError: The request offers native tools.
        """
        if request.tools:
            raise UnsupportedFeatureError("the local LM cannot call tools natively", feature="tools", provider="local")
        messages = _chat_messages(request)
        config = request.config
        with self._lock:
            llama, formatter = self._load()
            chat = formatter(messages=messages)
            prompt = llama.tokenize(chat.prompt.encode("utf-8"), add_bos=not chat.added_special, special=True)
            # With no cap the answer may fill the window, but it needs room for one token at least.
            max_tokens = config.max_tokens or max(self.context_tokens - len(prompt), 1)
            if len(prompt) + max_tokens > self.context_tokens:
                # Fail before generating: llama.cpp would silently shrink max_tokens, and a JSON
                # answer cut short surfaces later as a baffling parse error.
                raise ContextLengthError(
                    f"the prompt is {len(prompt)} tokens and up to {max_tokens} may be generated, but "
                    f"{self.model_path.name} has a {self.context_tokens}-token context window "
                    "(Settings.local_context_tokens)",
                    provider="local",
                )
            # Sampling knobs the request leaves unset keep llama.cpp's defaults.
            sampling = {
                name: value
                for name, value in (("top_p", config.top_p), ("top_k", config.top_k), ("seed", config.seed))
                if value is not None
            }
            completion = llama.create_completion(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=config.temperature if config.temperature is not None else 0.0,
                stop=[*config.stop, *(chat.stop or [])],
                stopping_criteria=chat.stopping_criteria,
                grammar=_grammar(config.response_format),
                **sampling,
            )
        choice = completion["choices"][0]
        return Response(
            id=completion.get("id"),
            model=request.model,
            message=Message.assistant(choice["text"]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(input_tokens=len(prompt), output_tokens=completion["usage"]["completion_tokens"]),
        )

    def stream(self, request: Request) -> Iterator[Any]:
        """Stream one request as events. The answer is generated whole, then replayed."""
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Free the model's memory. The next call loads it again."""
        with self._lock:
            if self._llama is not None:
                self._llama.close()
            self._llama = self._formatter = None

    # --- saving ------------------------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        """The settings that rebuild this engine (DSPy saves them with a program)."""
        return {
            "model_path": str(self._explicit_path) if self._explicit_path is not None else None,
            "model_name": self.model_name,
            "context_tokens": self.context_tokens,
            "threads": self.threads,
            "seed": self.seed,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        """Rebuild an engine from :meth:`dump_state` output."""
        return cls(
            state.get("model_path"),
            model_name=state.get("model_name", DEFAULT_LOCAL_MODEL),
            context_tokens=state.get("context_tokens", 2048),
            threads=state.get("threads"),
            seed=state.get("seed", _DEFAULT_SEED),
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> LlamaCppEngine:
        # DSPy deep-copies modules (optimizers, Module.deepcopy) and the LMs set on them. The
        # engine is a borrowed resource holding ~100 MB of weights and a lock: copies share it.
        return self

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Pickling (e.g. dspy's multiprocessing helpers) sends the settings, not the weights.
        return (type(self).load_state, (self.dump_state(),))

    # --- internals ---------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        """The Llama and its chat formatter, loading them on first use (call with the lock held)."""
        if self._llama is None:
            variant = load_cpu_backend()
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            logger.info("loading %s (context %d tokens, CPU %s)", self.model_path, self.context_tokens, variant)
            llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_tokens,
                n_threads=self.threads or DEFAULT_THREADS,
                seed=self.seed,
                verbose=False,
            )
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                llama.close()
                raise ModelNotAvailable(f"{self.model_path} has no chat template; use an instruct (chat) GGUF")
            # The same formatter llama.cpp builds for create_chat_completion; formatting here lets
            # us count the exact prompt tokens before generating.
            eos, bos = llama.token_eos(), llama.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, eos),
                bos_token=_token_text(llama, bos),
                stop_token_ids=[eos],
            )
            if self.prefix_cache_bytes:
                # llama.cpp keeps one KV sequence, so alternating predictors (tool choice, answer)
                # would each prefill their shared system prompt again; the cache restores the
                # longest matching prefix saved by an earlier call.
                llama.set_cache(prefix_cache(self.prefix_cache_bytes))
            self._llama = llama
        return self._llama, self._formatter


def state_bytes(state: Any) -> int:
    """Bytes a saved llama.cpp state (``llama_cpp.llama.LlamaState``) holds: KV data, logits, tokens."""
    return int(state.llama_state_size) + state.scores.nbytes + state.input_ids.nbytes


def prefix_cache(capacity_bytes: int) -> Any:
    """An LRU cache of saved KV states for llama.cpp's prefix reuse, held to ``capacity_bytes``.

    llama-cpp-python's ``LlamaRAMCache`` counts only the KV data against its capacity, while each
    saved state also copies the logits of every evaluated token (up to n_batch x vocabulary
    floats: 311 MB for Qwen's 152k-token vocabulary); a 60-query evaluation grew to 24 GB and
    was killed by the OOM killer. This cache keeps only the last row of logits (a restored state
    is always decoded again before sampling: ``Llama.load_state`` sets ``_requires_eval``) and
    counts every byte a state holds.

    Args:
        capacity_bytes: RAM for saved states; the oldest are dropped first.

    Returns:
        A ``llama_cpp.LlamaRAMCache`` for ``Llama.set_cache``.
    """
    from llama_cpp import LlamaRAMCache

    class PrefixCache(LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(state_bytes(state) for state in self.cache_state.values())

        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = value.scores[-1:].copy()
            if state_bytes(value) > self.capacity_bytes:
                return  # LlamaRAMCache would evict every saved state, then this one too
            super().__setitem__(key, value)

    return PrefixCache(capacity_bytes=capacity_bytes)


def _token_text(llama: Any, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace") if token != -1 else ""


def _chat_messages(request: Request) -> list[dict[str, str]]:
    """The request as OpenAI-style chat messages for the model's chat template."""
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        if message.text is None:
            raise ValueError(f"the local LM reads text only; a {message.role} message has other parts")
        # Small chat templates know system/user/assistant only; developer text is an instruction.
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text})
    return messages


def _grammar(response_format: dict[str, Any] | None) -> Any:
    """A llama.cpp grammar for the requested response format, or None for free text."""
    if response_format is None:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    schema = response_format.get("schema") if response_format.get("type") == "json_schema" else None
    if schema is not None:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


# --- building the LM DSPy uses ---------------------------------------------------------------


def build_lm(settings: Settings, *, cache: bool = False) -> dspy.LM:
    """Build the ``dspy.LM`` that ``settings.lm`` names. Nothing is loaded or sent yet.

    Args:
        settings: ``lm == "local"`` selects the default embedded model, ``"local/<name>"`` a
            named one (:data:`~personaagent.runtime.models.LOCAL_MODELS`); ``local_model_path``
            and ``local_context_tokens`` apply to both. Any other value is a DSPy/litellm model string used with
            ``lm_api_base`` and ``lm_api_key``. ``lm_max_tokens`` and ``lm_temperature`` apply to both.
            ``openai/...`` with ``lm_api_base`` (a self-hosted server) runs on DSPy's LiteLLM
            engine, which sends the cap as ``max_tokens``; servers such as llama.cpp ignore the
            ``max_completion_tokens`` DSPy's native engine sends.
        cache: Reuse answers to identical requests. This is DSPy's process-wide response cache,
            which writes to ``~/.dspy_cache`` unless ``dspy.configure_cache`` says otherwise; it is
            off so that runs never write outside ``Settings.home`` and measured LM cost is real
            cost. Defaults to False.

    Returns:
        The LM. Run it with the adapter :func:`adapter_for` picks.

    Raises:
        ModelNotAvailable: The local model file is not installed.
    """
    if settings.local_model is not None:
        engine = LlamaCppEngine(
            settings.local_model_path, model_name=settings.local_model, context_tokens=settings.local_context_tokens
        )
        return dspy.LM(
            f"local/{settings.local_model}",
            engine=engine,
            max_tokens=settings.lm_max_tokens,
            temperature=settings.lm_temperature,
            cache=cache,
        )
    # Unset connection settings are left out so litellm's own environment variables still apply.
    connection: dict[str, Any] = {}
    if settings.lm_api_base is not None:
        connection["api_base"] = settings.lm_api_base
    if settings.lm_api_key is not None:
        connection["api_key"] = settings.lm_api_key.get_secret_value()
    if settings.lm_api_base is not None and settings.lm.startswith("openai/"):
        # A self-hosted OpenAI-compatible server. DSPy's native engine writes the cap as OpenAI's
        # `max_completion_tokens`, which llama.cpp's server (and older vLLM, LM Studio...) ignore,
        # so a call only stopped at the model's end of text or the context limit. DSPy's LiteLLM
        # engine writes `max_tokens`, which they all read (OpenAI reasoning-model names, which reject `max_tokens`, still get
        # `max_completion_tokens` from DSPy). Hosted OpenAI (no api_base) and other providers
        # keep DSPy's default engine.
        connection["engine"] = "litellm"
        # Never send the user's OPENAI_API_KEY to a server they named by URL; such servers
        # rarely check keys, but DSPy refuses to call without one.
        connection.setdefault("api_key", "no-key")
        # LiteLLM waits 6000 s for a reply by default; keep the native engine's 600 s read bound
        # so a stalled server fails instead of hanging.
        connection["timeout"] = _SERVER_TIMEOUT_SECONDS
    return dspy.LM(
        settings.lm,
        max_tokens=settings.lm_max_tokens,
        temperature=settings.lm_temperature,
        cache=cache,
        **connection,
    )


class GrammarJSONAdapter(dspy.JSONAdapter):
    """DSPy's JSONAdapter for an engine that constrains sampling to the output schema.

    The grammar already forces every field's type (a label from the set, a number), so the last
    user message names the fields without repeating their types: for a 29-label task that repeat
    is ~100 tokens that every call had to prefill again (the system message, shared by calls of
    one predictor, comes back from llama.cpp's KV cache; the user message never does).
    """

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        fields = ", then ".join(f"`{name}`" for name in signature.output_fields)
        return f"Respond with a JSON object with the fields {fields}."


def adapter_for(settings: Settings, lm: Any = None) -> dspy.Adapter:
    """The DSPy adapter to run ``lm`` (or, when None, the LM ``settings`` names) with.

    The embedded model only produces parseable output as grammar-constrained JSON, so it gets
    :class:`GrammarJSONAdapter`. Any other LM (hosted, or a test's ``DummyLM``) gets DSPy's default
    :class:`dspy.ChatAdapter`, which falls back to JSON by itself when a reply does not parse.
    """
    local = isinstance(getattr(lm, "engine", None), LlamaCppEngine) if lm is not None else settings.local_model is not None
    return GrammarJSONAdapter() if local else dspy.ChatAdapter()
