#!/usr/bin/env bash
# Creates (once) and prints the path of the project's virtualenv.
#
# The virtualenv and pip's cache live OUTSIDE the clone, under $HYBRIDREC_CACHE
# (default ~/.cache/hybridrec), keyed by a hash of the requirement files and the
# Python version: a second clone, CI, or `make` after a `git clean` reuse it, and
# a change of any pin builds a fresh one. pyspark is a 450 MB sdist that builds on
# install, so this matters. Delta's jars are not fetched here: the session builder
# names them in spark.jars.packages and Spark's Ivy resolves them (from ~/.m2 or Maven
# Central) into its own cache on the first run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HYBRIDREC_CACHE:-$HOME/.cache/hybridrec}"
py="${PYTHON:-python3}"
mkdir -p "$cache"
# the files it installs from (not gpu.txt, which only the Databricks GPU cluster installs)
reqs=(constraints base local ml dev tracking bench)
key=$({ "$py" -c 'import sys; print(sys.version_info[:2])'; for r in "${reqs[@]}"; do cat "$here/requirements/$r.txt"; done; } \
      | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
log() { echo "[bootstrap] $*" >&2; }

exec 9>"$cache/.lock-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  log "creating $venv (first run only; pyspark builds from source, allow ~5-10 minutes)"
  "$py" -m venv "$venv"
  export PIP_CACHE_DIR="$cache/pip"
  "$venv/bin/pip" install -q --upgrade "pip==24.3.1" >&2
  # every extra (local Spark + Delta, the CPU deep-learning stack, tracking, dev tools) at the exact
  # versions of requirements/constraints.txt; the wheel itself carries only ranges
  "$venv/bin/pip" install -q -c "$here/requirements/constraints.txt" -r "$here/requirements/base.txt" \
      -r "$here/requirements/local.txt" -r "$here/requirements/ml.txt" -r "$here/requirements/dev.txt" \
      -r "$here/requirements/tracking.txt" -r "$here/requirements/bench.txt" >&2
  touch "$venv/.complete"
fi
# The project itself: an editable install (fast, no dependencies) pointing at this clone.
if ! "$venv/bin/python" -c "import hybridrec, os, sys; sys.exit(0 if os.path.realpath(hybridrec.__file__).startswith(os.path.realpath('$here')) else 1)" 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$here" >"$cache/editable-install.log" 2>&1 \
    || { cat "$cache/editable-install.log" >&2; exit 1; }
fi
echo "$venv"
