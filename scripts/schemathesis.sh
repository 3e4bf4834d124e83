#!/usr/bin/env bash
# Property-based test of a running DriftGuard API against its own OpenAPI document.
#
#   scripts/schemathesis.sh http://127.0.0.1:8089
#   scripts/schemathesis.sh --install      # only install (scripts/test.sh's tools stage)
#
# Installs schemathesis into ${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}/venv-schemathesis
# (once; DRIFTGUARD_SCHEMATHESIS_VENV names another venv directory), then runs every
# operation of URL/api/v1/openapi.json with a bounded number of examples, checking that no
# answer is a 5xx and every answer matches the documented schema. DRIFTGUARD_SERVER__AUTH_TOKEN,
# when set, is sent as the bearer token (also for fetching the document).
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 25), SCHEMATHESIS_VERSION (default 4.*),
# SCHEMATHESIS_TIMEOUT (per request, seconds; default 10).
# A local server for it: cargo run -p driftguard-server --example api_only -- 8089
set -euo pipefail

url="${1:?usage: $0 URL (e.g. http://127.0.0.1:8089) | --install}"
url="${url%/}"
venv="${DRIFTGUARD_SCHEMATHESIS_VENV:-${DRIFTGUARD_CACHE:-${HOME}/.cache/driftguard}/venv-schemathesis}"
venv="${venv%/}"
version="${SCHEMATHESIS_VERSION:-4.*}"

# Tests run this script concurrently: one installs while the others wait on a lock (two pip
# processes in one venv corrupt it). A venv whose `st` does not run (empty, or left half-built by
# a killed install) is rebuilt from scratch. `crates/cli/tests/schemathesis.rs` starts two
# installs at once on an empty venv.
install() {
    if "${venv}/bin/st" --version >/dev/null 2>&1; then
        echo "schemathesis: already installed in ${venv}"
        return 0
    fi
    echo "schemathesis: installing schemathesis==${version} into ${venv}"
    rm -rf "${venv}"
    python3 -m venv "${venv}" || {
        echo "schemathesis: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        return 1
    }
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip &&
        "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==${version}" &&
        "${venv}/bin/st" --version >/dev/null || {
        echo "schemathesis: installing into ${venv} failed; the next run rebuilds it" >&2
        return 1
    }
}
mkdir -p "$(dirname "${venv}")"
(
    flock 9
    install
) 9>"${venv}.lock"
[[ "${url}" == "--install" ]] && exit 0

auth=()
if [[ -n "${DRIFTGUARD_SERVER__AUTH_TOKEN:-}" ]]; then
    auth=(--header "Authorization: Bearer ${DRIFTGUARD_SERVER__AUTH_TOKEN}")
fi

# --url pins requests to the server under test whatever `servers` the document names.
# GET /api/v1/events is an event stream that stays open by design: a fuzzer's request to it can
# only time out, so it is left out here and tested by crates/server/tests/api.rs instead.
exec "${venv}/bin/st" run "${url}/api/v1/openapi.json" \
    --url "${url}" \
    --exclude-path /api/v1/events \
    "${auth[@]}" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --request-timeout "${SCHEMATHESIS_TIMEOUT:-10}" \
    --max-failures 50 \
    --no-color
