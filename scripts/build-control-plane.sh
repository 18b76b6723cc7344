#!/usr/bin/env bash
# Called by .ci/run and by the pytest fixture in tests/infra/kube.py (through
# `ensure_control_plane`): builds etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok from the Go module proxy into a version-keyed cache outside the repo.
# Rebuilds nothing that is already cached.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
CACHE_ROOT="${RELEASE_BOT_CACHE:-$HOME/.cache/release-bot}"
BIN_DIR="$CACHE_ROOT/control-plane-$K8S_VERSION-kwok-$KWOK_VERSION"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

all_cached() {
  for name in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$name" ]] || return 1; done
}

if all_cached; then
  echo "$BIN_DIR"
  exit 0
fi

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

k8s_dir="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
upstream_mod="$k8s_dir/go.mod"
staging_version="v0.${K8S_VERSION#v1.}"
go_directive="$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$upstream_mod")"

# Every k8s.io module upstream replaces with ./staging/src/... becomes its
# published v0.x tag; the list comes from upstream's go.mod, not from us.
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
ldflags="-s -w -X $version_pkg.gitVersion=$K8S_VERSION -X $version_pkg.gitMajor=$major -X $version_pkg.gitMinor=$minor"
ldflags+=" -X $version_pkg.gitTreeState=clean -X $version_pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for component in kube-apiserver kube-controller-manager kube-scheduler; do
  if [[ ! -x "$BIN_DIR/$component" ]]; then
    echo "building $component $K8S_VERSION" >&2
    (cd "$WORK/kube" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$component.tmp" "k8s.io/kubernetes/cmd/$component")
    mv "$BIN_DIR/$component.tmp" "$BIN_DIR/$component"
  fi
done

if [[ ! -x "$BIN_DIR/etcd" ]]; then
  echo "building etcd $etcd_version (pinned by kubernetes $K8S_VERSION)" >&2
  mkdir -p "$WORK/etcd"
  printf 'module release-bot/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$go_directive" "$etcd_version" > "$WORK/etcd/go.mod"
  (cd "$WORK/etcd" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
fi

if [[ ! -x "$BIN_DIR/kwok" ]]; then
  echo "building kwok $KWOK_VERSION" >&2
  mkdir -p "$WORK/kwok"
  printf 'module release-bot/kwok\n\ngo %s\n\nrequire sigs.k8s.io/kwok %s\n' "$go_directive" "$KWOK_VERSION" > "$WORK/kwok/go.mod"
  (cd "$WORK/kwok" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok)
  mv "$BIN_DIR/kwok.tmp" "$BIN_DIR/kwok"
fi

echo "control plane built in $(( $(date +%s) - started )) s" >&2
echo "$BIN_DIR"
