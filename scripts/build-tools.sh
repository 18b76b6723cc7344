#!/usr/bin/env bash
# Called by scripts/setup.sh, by the pytest fixture in tests/infra/tools.py (`ensure_tools`) and
# by a person who wants the chart tools: builds helm and kubectl from the Go module proxy into a
# version-keyed cache outside the repo, and prints that directory. Rebuilds nothing cached.
#
# kubectl is built exactly like the control plane (scripts/build-control-plane.sh): same
# Kubernetes version, same wrapper go.mod (staging modules replaced by their v0.x tags), same
# flags, so on a machine that built the control plane the shared packages (client-go, api,
# apimachinery, ...) come from the Go build cache. helm is built from its release's own go.mod.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
HELM_VERSION="${HELM_VERSION:-v3.20.2}"
CACHE_ROOT="${RELEASE_BOT_CACHE:-$HOME/.cache/release-bot}"
BIN_DIR="$CACHE_ROOT/tools-helm-$HELM_VERSION-kubectl-$K8S_VERSION"

if [[ -x "$BIN_DIR/helm" && -x "$BIN_DIR/kubectl" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

module_dir() {
  go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

if [[ ! -x "$BIN_DIR/kubectl" ]]; then
  upstream_mod="$(module_dir "k8s.io/kubernetes@$K8S_VERSION")/go.mod"
  staging_version="v0.${K8S_VERSION#v1.}"
  go_directive="$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")"
  staging_modules="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {print $1}' "$upstream_mod")"
  mkdir -p "$WORK/kube"
  {
    echo "module release-bot/control-plane"
    echo
    echo "go $go_directive"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    for module in $staging_modules; do echo "replace $module => $module $staging_version"; done
  } > "$WORK/kube/go.mod"

  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
  version_pkg="k8s.io/component-base/version"
  ldflags="-s -w -X $version_pkg.gitVersion=$K8S_VERSION -X $version_pkg.gitMajor=$major"
  ldflags+=" -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
  ldflags+=" -X $version_pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "building kubectl $K8S_VERSION" >&2
  step=$(date +%s)
  (cd "$WORK/kube" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/kubectl.tmp" \
    k8s.io/kubernetes/cmd/kubectl)
  mv "$BIN_DIR/kubectl.tmp" "$BIN_DIR/kubectl"
  echo "kubectl built in $(( $(date +%s) - step )) s" >&2
fi

if [[ ! -x "$BIN_DIR/helm" ]]; then
  helm_mod="$(module_dir "helm.sh/helm/v3@$HELM_VERSION")/go.mod"
  go_directive="$(awk '$1 == "go" {print $2; exit}' "$helm_mod")"
  # helm's Makefile derives the Kubernetes version it assumes (capabilities, lint) from
  # client-go's: v0.35.1 -> 1.35.
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$helm_mod")"
  kube_minor="${client_go#v0.}"; kube_minor="${kube_minor%%.*}"
  mkdir -p "$WORK/helm"
  printf 'module release-bot/helm\n\ngo %s\n\nrequire helm.sh/helm/v3 %s\n' \
    "$go_directive" "$HELM_VERSION" > "$WORK/helm/go.mod"
  # The release's own go.sum pins every dependency at the versions helm was released with.
  cp "$(dirname "$helm_mod")/go.sum" "$WORK/helm/go.sum"
  chmod u+w "$WORK/helm/go.sum"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.metadata= "
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1"
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kube_minor"
  done
  echo "building helm $HELM_VERSION" >&2
  step=$(date +%s)
  (cd "$WORK/helm" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/helm.tmp" \
    helm.sh/helm/v3/cmd/helm)
  mv "$BIN_DIR/helm.tmp" "$BIN_DIR/helm"
  echo "helm built in $(( $(date +%s) - step )) s" >&2
fi

echo "tools built in $(( $(date +%s) - started )) s" >&2
echo "$BIN_DIR"
