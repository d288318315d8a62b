#!/usr/bin/env bash
# The code's gates: lint, format and types, with the versions pinned in uv.lock. CI runs this
# before the tests (.ci/run); a developer runs it, or lets the pre-commit hook run it
# (docs/guide/contributing.md). Every gate runs even after one fails, so one run lists them all;
# the exit status is 1 when any failed.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

failed=()

# gate NAME WHY COMMAND...: run one gate; on failure say which and why (its own output is above).
gate() {
  local name=$1 why=$2
  shift 2
  log "gate: $name ($*)"
  if "$@"; then
    log "gate passed: $name"
  else
    log "GATE FAILED: $name - $why"
    failed+=("$name")
  fi
}

gate "ruff check" "lint findings above; many are fixed by: uv run ruff check --fix ." \
  uv run --frozen ruff check .
gate "ruff format" "files above are not formatted; fix with: uv run ruff format ." \
  uv run --frozen ruff format --check .
gate "mypy" "type errors above (configuration: [tool.mypy] in pyproject.toml)" \
  uv run --frozen mypy

# Further gates go here, in the same form. The docs site, for instance:
#   gate "mkdocs" "the site does not build strictly; see the warnings above" uv run --frozen mkdocs build --strict

if [ ${#failed[@]} -gt 0 ]; then
  log "failed gates: ${failed[*]}"
  exit 1
fi
log "all gates passed"
