#!/usr/bin/env bash
# The Helm chart (deploy/helm/homecare): fetch a pinned helm, and check the chart.
#   deploy/helm.sh fetch    build helm (pinned) from the Go module proxy into .cache/bin
#   deploy/helm.sh check    lint the chart, render it with each example values file and validate
#                           every object against the Kubernetes version the docs name
#   deploy/helm.sh path     print the helm binary's path (fetching it first)
# docs/guide/kubernetes.md explains the chart.
source "$(dirname "$0")/lib.sh"

HELM_VERSION=v3.22.0          # helm.sh/helm/v3, built with the machine's Go
KUBERNETES_VERSION=1.35.0     # the version the chart is validated for (docs/guide/kubernetes.md)
CHART="$ROOT/deploy/helm/homecare"
HELM="${HOMECARE_HELM:-$CACHE_DIR/bin/helm-$HELM_VERSION}"
LOG="$LOG_DIR/helm.log"

fetch() {
  [ -x "$HELM" ] && return 0
  component "helm" "$LOG" "helm is built from the Go module proxy with the machine's Go (go version >= 1.24); or set HOMECARE_HELM to a helm $HELM_VERSION binary"
  command -v go >/dev/null || fail "no Go toolchain to build helm with" "install Go (apt-get install golang), or set HOMECARE_HELM to a helm binary"
  log "building helm $HELM_VERSION from the Go module proxy (a few minutes, once)"
  local gobin; gobin=$(mktemp -d "$CACHE_DIR/gobin.XXXXXX")
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$LOG" 2>&1
  mkdir -p "$(dirname "$HELM")" && mv "$gobin/helm" "$HELM" && rmdir "$gobin"
}

check() {
  fetch
  component "helm chart" "$LOG" "the chart's templates or values are wrong: the output above names the file and line"
  local out; out=$(mktemp -d)
  for values in "$CHART"/values.yaml "$CHART"/examples/*.yaml; do
    log "lint and render with $(basename "$values")"
    "$HELM" lint --strict "$CHART" -f "$values" >"$LOG" 2>&1 || { cat "$LOG" >&2; fail "helm lint refused the chart with $values"; }
    "$HELM" template homecare "$CHART" -f "$values" --namespace homecare --kube-version "$KUBERNETES_VERSION" \
      >"$out/$(basename "$values")" 2>"$LOG" || { cat "$LOG" >&2; fail "helm template failed with $values"; }
  done
  # Every object against the Kubernetes $KUBERNETES_VERSION schemas; the Prometheus Operator's
  # ServiceMonitor is a custom resource, checked by its kind and fields in tests/deploy instead.
  (cd "$ROOT" && uv run --frozen python - "$KUBERNETES_VERSION" "$out"/*.yaml <<'PY'
import sys

import kubernetes_validate
import yaml

version, failures, checked = sys.argv[1], 0, 0
for path in sys.argv[2:]:
    for obj in yaml.safe_load_all(open(path)):
        if not obj or obj["kind"] == "ServiceMonitor":
            continue
        checked += 1
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures += 1
            print(f"{path}: {obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
print(f"{checked} objects checked against Kubernetes {version}, {failures} invalid")
sys.exit(1 if failures else 0)
PY
  ) || fail "objects above do not validate against Kubernetes $KUBERNETES_VERSION"
  rm -rf "$out"
  log "chart renders and validates (Kubernetes $KUBERNETES_VERSION)"
}

case "${1:-check}" in
  fetch) fetch ;;
  check) check ;;
  path) fetch; echo "$HELM" ;;
  *) echo "usage: $0 fetch|check|path" >&2; exit 2 ;;
esac
