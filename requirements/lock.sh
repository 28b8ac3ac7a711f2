#!/usr/bin/env bash
# Resolve the lock files from pyproject.toml and build.in: `make lock`.
#   requirements/build.txt  the build tools (pyproject's [build-system] pins the same)
#   requirements/serve.txt  the runtime install with the service: fastner[serve]
#   requirements/dev.txt    everything make test needs: fastner[dev] and the build tools
# usage: LOCK_DATE=2026-11-28T00:00:00Z requirements/lock.sh UV [OUTDIR]
# Packages released after LOCK_DATE are ignored, so the same date gives the same
# files (tests/test_packaging.py re-resolves into a temporary OUTDIR and compares).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${1:?usage: lock.sh UV [OUTDIR]}
out=${2:-requirements}
common=(pip compile --quiet --universal --python-version 3.11 --exclude-newer "${LOCK_DATE:?}"
        --custom-compile-command "make lock")
"$uv" "${common[@]}" requirements/build.in -o "$out/build.txt"
"$uv" "${common[@]}" pyproject.toml --extra serve -o "$out/serve.txt"
"$uv" "${common[@]}" pyproject.toml requirements/build.in --extra dev -o "$out/dev.txt"
