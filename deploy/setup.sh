#!/usr/bin/env bash
# Install what the project needs on a Debian machine (idempotent; quick when all is there):
# PostgreSQL, a Java runtime and Maven (for Kafka's jars), uv and the locked Python packages,
# Kafka's jars from Maven Central, the web console's front-end packages from the npm registry
# (package-lock.json), and Debian's Chromium for the browser tests (Playwright drives it; it
# never downloads a browser of its own).
source "$(dirname "$0")/lib.sh"

UV_VERSION=0.13.9
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v curl >/dev/null || missing+=(curl)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing with apt-get: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  log "installing uv $UV_VERSION"
  python3 -m pip install -q "uv==$UV_VERSION"
fi
log "syncing Python packages from uv.lock"
(cd "$ROOT" && uv sync --frozen -q)

if [ ! -f "$ROOT/node_modules/.package-lock.json" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
  log "installing the console's front-end packages from package-lock.json (govuk-frontend, axe-core)"
  (cd "$ROOT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

bash "$ROOT/deploy/kafka.sh" fetch
log "setup done"
