#!/usr/bin/env bash
# Called by scripts/setup.sh, by the pytest fixture in tests/infra/argo.py (`ensure_argo_rollouts`)
# and by a person who wants the real Argo Rollouts controller: builds rollouts-controller from the
# Go module proxy into a version-keyed cache outside the repo, and prints that directory.
# Rebuilds nothing cached. With --module-dir it only downloads the release's module and prints its
# directory: tests/infra/crds.py installs that release's CRDs, so controller and CRDs never drift.
#
# Built like helm in scripts/build-tools.sh: a wrapper module requiring the release, carrying the
# release's own replace directives (its k8s.io/* pins) and go.sum, both copied from the module at
# build time.
#
# Why v1.10.2 and a newer Go than the machine's: up to v1.9.3 the controller writes its own status
# patches back into its informer cache, and a resume, promote or abort patched while a reconcile is
# in flight is overwritten there and never acted on (argo-rollouts issues 4694, 4073; fixed in
# v1.10 by PR 4786). The tests patch within milliseconds of a pause and hit that every few runs.
# v1.10.x asks for go 1.26.10; the go command fetches the go1.27.3 toolchain from the module proxy
# (once, about 10 s) for this script only: nothing else in the repo builds Go with it.
set -euo pipefail

ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.10.2}"
CACHE_ROOT="${RELEASE_BOT_CACHE:-$HOME/.cache/release-bot}"
BIN_DIR="$CACHE_ROOT/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
MODULE=github.com/argoproj/argo-rollouts
export GOTOOLCHAIN=go1.27.3

module_dir() {
  go mod download -json "$MODULE@$ARGO_ROLLOUTS_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

if [[ "${1:-}" == "--module-dir" ]]; then
  module_dir
  exit 0
fi

if [[ -x "$BIN_DIR/rollouts-controller" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

upstream_dir="$(module_dir)"
upstream_mod="$upstream_dir/go.mod"
go_directive="$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")"
{
  echo "module release-bot/argo-rollouts"
  echo
  echo "go $go_directive"
  echo
  echo "require $MODULE $ARGO_ROLLOUTS_VERSION"
  echo
  # Every replace of the release, in a block or on one line, exactly as upstream wrote it.
  awk '/^replace \($/ {block = 1} block || /^replace / {print} block && /^\)$/ {block = 0}' \
    "$upstream_mod"
} > "$WORK/go.mod"
cp "$upstream_dir/go.sum" "$WORK/go.sum"
chmod u+w "$WORK/go.sum"

# The version variables argo-rollouts' Makefile sets (no git commit: the module has none).
version_pkg="$MODULE/utils/version"
ldflags="-s -w -X $version_pkg.version=${ARGO_ROLLOUTS_VERSION#v}"
ldflags+=" -X $version_pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags+=" -X $version_pkg.gitTreeState=clean"
echo "building rollouts-controller $ARGO_ROLLOUTS_VERSION" >&2
(cd "$WORK" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/rollouts-controller.tmp" \
  "$MODULE/cmd/rollouts-controller")
mv "$BIN_DIR/rollouts-controller.tmp" "$BIN_DIR/rollouts-controller"

echo "rollouts-controller built in $(( $(date +%s) - started )) s" >&2
echo "$BIN_DIR"
