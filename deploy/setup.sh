#!/usr/bin/env bash
# Install what the project needs on a Debian machine (idempotent; quick when all is there):
# PostgreSQL, a Java runtime and Maven (for Kafka's jars), a Java 21+ JDK for Keycloak (the local
# identity provider; the default Java stays Kafka's), uv and the locked Python packages,
# Kafka's jars from Maven Central, the web console's front-end packages from the npm registry
# (package-lock.json), and Debian's Chromium for the browser tests (Playwright drives it; it
# never downloads a browser of its own), and helm (pinned, built with the machine's Go) for the chart's gate.
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
command -v go >/dev/null || [ -n "${HOMECARE_HELM:-}" ] || missing+=(golang-go)  # builds helm (deploy/helm.sh)
# Keycloak needs Java 21+ (deploy/keycloak.sh looks under /usr/lib/jvm, 25 then 21); install
# whichever of Debian's headless JDKs the archive has when none is there.
keycloak_java=no
for jdk in /usr/lib/jvm/*25* /usr/lib/jvm/*21*; do [ -x "$jdk/bin/java" ] && keycloak_java=yes && break; done
if [ ${#missing[@]} -gt 0 ] || [ $keycloak_java = no ]; then
  $SUDO apt-get update -qq
  if [ $keycloak_java = no ]; then
    for candidate in openjdk-25-jdk-headless openjdk-21-jdk-headless; do
      if apt-cache policy "$candidate" 2>/dev/null | grep -q 'Candidate: [0-9]'; then missing+=("$candidate"); break; fi
    done
  fi
  log "installing with apt-get: ${missing[*]}"
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
bash "$ROOT/deploy/helm.sh" fetch  # the chart's gate (deploy/check.sh): helm built from the Go module proxy
[ -n "${OIDC_ISSUER:-}" ] || bash "$ROOT/deploy/keycloak.sh" fetch
log "setup done"
