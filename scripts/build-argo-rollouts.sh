#!/usr/bin/env bash
# Called by scripts/setup.sh, by the pytest fixture in tests/infra/argo.py (`ensure_argo_rollouts`)
# and by a person who wants the real Argo Rollouts controller: builds rollouts-controller from the
# Go module proxy into a version-keyed cache outside the repo, and prints that directory.
# Rebuilds nothing cached. With --version it prints only the pinned release (tests/infra/crds.py
# installs that release's CRDs, so controller and CRDs never drift apart).
#
# Built like helm in scripts/build-tools.sh: a wrapper module requiring the release, carrying the
# release's own replace directives (its k8s.io/* pins) and go.sum, both copied from the module at
# build time. v1.9.2 is the newest release whose go directive (1.24.9) the machine's Go accepts;
# v1.9.3 and v1.10.x ask for go 1.26.10.
set -euo pipefail

ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.9.2}"
CACHE_ROOT="${RELEASE_BOT_CACHE:-$HOME/.cache/release-bot}"
BIN_DIR="$CACHE_ROOT/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
MODULE=github.com/argoproj/argo-rollouts

if [[ "${1:-}" == "--version" ]]; then
  echo "$ARGO_ROLLOUTS_VERSION"
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

upstream_dir="$(go mod download -json "$MODULE@$ARGO_ROLLOUTS_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
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
