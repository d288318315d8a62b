#!/usr/bin/env bash
# The static gates: lint, format, types and the docs site, with the versions pinned in uv.lock. CI runs this
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

# The docs site builds with --strict (a broken link, a missing page or API document fails it).
# Needs `npm ci`'s node_modules (mermaid.js), which deploy/setup.sh installs.
gate "mkdocs" "the docs site does not build with --strict; see the warnings above" \
  env NO_MKDOCS_2_WARNING=1 uv run --frozen mkdocs build --strict --site-dir "${HOMECARE_SITE_DIR:-site}"

# The Helm chart lints, renders with each example values file and validates against the
# Kubernetes version docs/guide/kubernetes.md names (helm from deploy/setup.sh, pinned).
gate "helm chart" "the chart does not lint, render or validate; see the lines above" \
  bash "$ROOT/deploy/helm.sh" check

# Further gates go here, in the same form.

if [ ${#failed[@]} -gt 0 ]; then
  log "failed gates: ${failed[*]}"
  exit 1
fi
log "all gates passed"
