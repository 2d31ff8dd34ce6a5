#!/usr/bin/env bash
# The whole check, as CI runs it: (re)create .venv, install mailgate with its test extras,
# then ruff (lint + format check), mypy --strict on engine/ and connectors/, and pytest.
# Idempotent: run it as often as you like. Extra arguments go to pytest (e.g. -x, -k wheel).
# Every step runs even if an earlier one failed; the exit status is 1 if any failed.
# pytest collecting no test at all (its exit status 5) counts as a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
export PIP_DISABLE_PIP_VERSION_CHECK=1

failed=()
step() { printf '\n== %s\n' "$1"; }
run() {  # run NAME COMMAND...: run a check, remember it if it fails
  local name=$1
  shift
  step "$name"
  "$@" || failed+=("$name")
}

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  step "creating $VENV with $("$PYTHON" --version 2>&1)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

step "installing mailgate (editable) with its test extras"
"$VENV/bin/python" -m pip install -q -e '.[test]'

run "ruff check" "$VENV/bin/ruff" check .
run "ruff format --check" "$VENV/bin/ruff" format --check .
run "mypy --strict engine connectors" "$VENV/bin/mypy" --strict engine connectors

step "pytest"
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "scripts/test.sh: pytest ran no test; that counts as a failure" >&2
  failed+=("pytest (no tests)")
elif [ "$status" -ne 0 ]; then
  failed+=("pytest")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'scripts/test.sh: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
