#!/usr/bin/env bash
# Property-based test of a running DriftGuard API against its own OpenAPI document.
#
#   scripts/schemathesis.sh http://127.0.0.1:8089
#
# Installs schemathesis into $HOME/.cache/driftguard/venv-schemathesis (once), then runs every
# operation of URL/api/v1/openapi.json with a bounded number of examples, checking that no
# answer is a 5xx and every answer matches the documented schema. DRIFTGUARD_SERVER__AUTH_TOKEN,
# when set, is sent as the bearer token (also for fetching the document).
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 25), SCHEMATHESIS_VERSION (default 4.*),
# SCHEMATHESIS_TIMEOUT (per request, seconds; default 10).
# A local server for it: cargo run -p driftguard-server --example api_only -- 8089
set -euo pipefail

url="${1:?usage: $0 URL (e.g. http://127.0.0.1:8089)}"
url="${url%/}"
venv="${HOME}/.cache/driftguard/venv-schemathesis"
version="${SCHEMATHESIS_VERSION:-4.*}"

# Tests run this script concurrently: one installs while the others wait on a lock (two pip
# processes in one venv corrupt it). A venv whose `st` does not run is rebuilt from scratch.
install() {
    "${venv}/bin/st" --version >/dev/null 2>&1 && return 0
    rm -rf "${venv}"
    python3 -m venv "${venv}"
    "${venv}/bin/pip" install --quiet --upgrade pip
    "${venv}/bin/pip" install --quiet "schemathesis==${version}"
}
mkdir -p "$(dirname "${venv}")"
(
    flock 9
    install
) 9>"${venv}.lock"

auth=()
if [[ -n "${DRIFTGUARD_SERVER__AUTH_TOKEN:-}" ]]; then
    auth=(--header "Authorization: Bearer ${DRIFTGUARD_SERVER__AUTH_TOKEN}")
fi

# --url pins requests to the server under test whatever `servers` the document names.
exec "${venv}/bin/st" run "${url}/api/v1/openapi.json" \
    --url "${url}" \
    "${auth[@]}" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --request-timeout "${SCHEMATHESIS_TIMEOUT:-10}" \
    --max-failures 50 \
    --no-color
