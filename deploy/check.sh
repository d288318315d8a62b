#!/usr/bin/env bash
# The static gates, run by .ci/run after setup: the docs site builds with --strict (a broken link,
# a missing page or API document fails it). Needs the locked Python packages and `npm ci`'s
# node_modules (mermaid.js), which deploy/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
NO_MKDOCS_2_WARNING=1 uv run --frozen mkdocs build --strict --quiet --site-dir "${HOMECARE_SITE_DIR:-site}"
echo "docs site built with --strict"
