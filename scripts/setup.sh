#!/usr/bin/env bash
# One-time, idempotent set-up of everything Rosetta needs beyond the Rust
# toolchain: a project-local Python virtual environment holding libtorch
# (torch==2.11.0, which tch builds against) and the Python peers used by
# tests and benchmarks. Re-running it is free when nothing changed: the
# requirements file's hash is stamped into the venv.
#
#   ROSETTA_VENV   where the venv lives (default: <repo>/.venv)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ROSETTA_VENV:-$repo_root/.venv}"
requirements="$repo_root/python/requirements.txt"
stamp="$venv/.rosetta-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
    echo "setup: python3 is required to install libtorch (torch==2.11.0) but was not found on PATH" >&2
    exit 1
fi

echo "setup: installing Python requirements into $venv (torch is ~4.7 GB on first install)" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
echo "setup: done ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
