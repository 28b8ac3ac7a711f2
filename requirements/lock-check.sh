#!/usr/bin/env bash
# Re-resolve the lock files into a temporary folder and compare them with the
# committed ones: `make lock-check`, for a maintainer before bumping LOCK_DATE or
# after editing pyproject.toml's dependencies. It asks the live package index, so it
# is not part of `make test`: what the index reports for a past date can change
# (a release published late with an earlier upload time), and a test must not fail
# because of that. A difference with an unchanged pyproject.toml means the index
# changed; `make lock` then takes its answer.
# usage: LOCK_DATE=2026-11-28T00:00:00Z requirements/lock-check.sh UV
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${1:?usage: lock-check.sh UV}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
requirements/lock.sh "$uv" "$tmp"
stale=()
for name in build.txt serve.txt dev.txt; do
    diff -u "requirements/$name" "$tmp/$name" || stale+=("requirements/$name")
done
if ((${#stale[@]})); then
    echo "lock-check: ${stale[*]} differ from what make lock resolves for LOCK_DATE=${LOCK_DATE}" >&2
    exit 1
fi
echo "lock-check: requirements/*.txt are what make lock resolves for LOCK_DATE=${LOCK_DATE}"
