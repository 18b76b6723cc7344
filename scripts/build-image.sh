#!/usr/bin/env bash
# Called by tests/test_image.py (its `image` fixture) and by a person: builds the container
# image localhost/release-bot:<version in pyproject.toml> from deploy/Containerfile with buildah,
# FROM a Debian base rootfs made here with debootstrap, the Python dependencies installed
# offline from a wheelhouse filled on the host. Both are cached outside the repo, keyed by their
# inputs; the image is rebuilt unless it was built from the same inputs. Prints the image's
# name, ID and size on stdout ("image: ...", "id: ...", "size: ..."), timings on stderr.
#
# What works in this sandbox (root, no container registry reachable, no runc/crun installed):
# buildah's default overlay storage driver and `--isolation chroot`, which needs no OCI runtime
# and no user namespace. Where overlay is refused (overlay on overlay, some CI runners), run with
# STORAGE_DRIVER=vfs (buildah reads it): slower and bigger on disk, same image.
# The mirror for debootstrap is read from this machine's own apt sources at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${RELEASE_BOT_BASE_SUITE:-bookworm}"
BASE_PACKAGES=(python3 python3-venv) # Debian 12's python3 is 3.11
BASE_RECIPE=2                        # bump when build_base_rootfs changes what it makes
CACHE_ROOT="${RELEASE_BOT_CACHE:-$HOME/.cache/release-bot}"
IMAGE_REPO=localhost/release-bot
BASE_REPO=localhost/release-bot-base
export BUILDAH_ISOLATION=chroot

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# One build at a time per cache (two test sessions share the base, the wheelhouse and the tag).
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/build-image.lock"
flock 9

WORK="$(mktemp -d)"
cleanup() {
  # debootstrap and the upgrade mount /proc and friends inside the rootfs: unmount them
  # before deleting, and never let rm cross into another file system.
  findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | xargs -r -n1 umount -l || true
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
started=$(date +%s)

# The apt sources of this machine for $SUITE, $SUITE-updates and $SUITE-security (component
# main), as one-line entries: line 1 is the main suite, whose URI is debootstrap's mirror.
python3 - "$SUITE" >"$WORK/sources.list" <<'EOF'
import glob
import sys

suite = sys.argv[1]
wanted = [suite, f"{suite}-updates", f"{suite}-security"]
found = {}


def add(types, uris, suites, components):
    if "deb" in types and "main" in components:
        for s in suites:
            if s in wanted and uris:
                found.setdefault(s, uris[0].rstrip("/"))


for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line.strip() and not line.startswith(("#", " ", "\t")) and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
        if fields.get("enabled", ["yes"])[0] != "no":
            add(fields.get("types", []), fields.get("uris", []), fields.get("suites", []),
                fields.get("components", []))
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        continue
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words[1:2] and words[1].startswith("["):
            while words[1:] and not words[1].endswith("]"):
                del words[1]
            del words[1]
        if len(words) >= 4:
            add([words[0]], [words[1]], [words[2]], words[3:])
if suite not in found:
    sys.exit(f"no enabled 'deb' source for {suite} main in this machine's apt sources")
for s in wanted:
    if s in found:
        print(f"deb {found[s]} {s} main")
EOF
mirror="$(awk 'NR == 1 {print $2}' "$WORK/sources.list")"

base_key="$(
  {
    echo "suite=$SUITE packages=${BASE_PACKAGES[*]} recipe=$BASE_RECIPE"
    cat "$WORK/sources.list"
  } | sha256sum | cut -c1-12
)"
BASE_TAG="$BASE_REPO:$SUITE-$base_key"
BASE_TAR="$CACHE_ROOT/image-base-$SUITE-$base_key/rootfs.tar"

build_base_rootfs() {
  local rootfs="$WORK/rootfs" include
  include="$(IFS=,; echo "${BASE_PACKAGES[*]}")"
  echo "debootstrap $SUITE (minbase + $include): a few minutes, once" >&2
  if ! debootstrap --variant=minbase --include="$include" --components=main \
    "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    return 1
  fi
  # Security and point-release updates, from the same sources as the host.
  cp "$WORK/sources.list" "$rootfs/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  if ! {
    chroot "$rootfs" apt-get update -qq &&
      chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade &&
      chroot "$rootfs" apt-get clean
  } >"$WORK/upgrade.log" 2>&1; then
    tail -n 30 "$WORK/upgrade.log" >&2
    return 1
  fi
  umount "$rootfs/proc"
  # Slim: no package lists or caches, no manuals or translations (copyright files stay).
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/log/* "$rootfs"/etc/resolv.conf "$rootfs"/root/.cache
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  # The standard library keeps the bytecode Debian compiled: on a read-only root nothing
  # can be compiled and cached at run time, and compiling it at each start costs seconds.
  chroot "$rootfs" python3 -m compileall -q -x '/(test|idlelib|lib2to3)/' /usr/lib/python3.11 \
    >/dev/null
  mkdir -p "$(dirname "$BASE_TAR")"
  tar --one-file-system --numeric-owner --xattrs -C "$rootfs" -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
}

import_base() {
  local ctr mnt
  ctr="$(buildah from --quiet scratch)"
  mnt="$(buildah mount "$ctr")"
  tar --numeric-owner --xattrs -C "$mnt" -xf "$BASE_TAR"
  buildah umount "$ctr" >/dev/null
  buildah config --env LANG=C.UTF-8 --cmd /bin/sh \
    --label "org.opencontainers.image.title=release-bot base: Debian $SUITE minbase + ${BASE_PACKAGES[*]}" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_TAG" >/dev/null
}

if ! buildah inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
  t0=$(date +%s)
  if [[ ! -f "$BASE_TAR" ]]; then
    build_base_rootfs
    echo "base rootfs built in $(($(date +%s) - t0)) s: $BASE_TAR" >&2
  fi
  t1=$(date +%s)
  import_base
  echo "base imported in $(($(date +%s) - t1)) s: $BASE_TAG" >&2
fi
base_digest="$(buildah inspect --type image --format '{{.FromImageDigest}}' "$BASE_TAG")"

# The wheelhouse: every dependency (and the build backend) as wheels for the base's own Python
# and platform, so the image build installs offline. The base's python3 reports what pip must
# aim at: its version, machine, glibc and its environment-marker values.
probe="$(buildah from --quiet --pull=never "$BASE_TAG")"
target_env="$(buildah run "$probe" -- python3 -c '
import json, os, platform, sys
v = sys.implementation.version
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": f"{v.major}.{v.minor}.{v.micro}",
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": "%d.%d" % sys.version_info[:2],
    "sys_platform": sys.platform,
    "glibc": platform.libc_ver()[1],
}, sort_keys=True))')"
buildah rm "$probe" >/dev/null
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$target_env" "$1"; }
py_version="$(field python_full_version)" # 3.11.2
py_tag="cp$(field python_version | tr -d .)" # cp311
py_arch="$(field platform_machine)"
glibc="$(field glibc)"
requirements="$(python3 -c '
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"]))')"
platforms=()
for ((minor = ${glibc#*.}; minor >= 5; minor--)); do platforms+=("manylinux_2_${minor}_$py_arch"); done
platforms+=("manylinux2014_$py_arch" "manylinux2010_$py_arch" "manylinux1_$py_arch")
wheel_key="$(printf '%s\n' "$requirements" "$target_env" "${platforms[@]}" | sha256sum | cut -c1-12)"
WHEELHOUSE="$CACHE_ROOT/wheelhouse-$py_tag-$wheel_key"
if [[ ! -d "$WHEELHOUSE" ]]; then
  t0=$(date +%s)
  rm -rf "$WHEELHOUSE.tmp"
  platform_args=()
  for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done
  mapfile -t reqs <<<"$requirements"
  # `pip download --python-version` picks wheels for the target but evaluates environment
  # markers for the Python running pip (the host's 3.11.7 dropped redis's
  # `async-timeout; python_full_version < "3.11.3"`, which the base's 3.11.2 needs), so pip
  # runs here with its marker environment replaced by the one the base reported.
  python3 - "$target_env" download --quiet --disable-pip-version-check \
    --dest "$WHEELHOUSE.tmp" --only-binary=:all: --implementation cp \
    --python-version "$py_version" --abi "$py_tag" "${platform_args[@]}" "${reqs[@]}" <<'EOF'
import json
import sys

from pip._vendor.packaging import markers

target = json.loads(sys.argv[1])
target.pop("glibc")
host_environment = markers.default_environment
markers.default_environment = lambda: {**host_environment(), **target}

from pip._internal.cli.main import main

sys.exit(main(sys.argv[2:]))
EOF
  mv "$WHEELHOUSE.tmp" "$WHEELHOUSE"
  echo "wheelhouse filled in $(($(date +%s) - t0)) s: $WHEELHOUSE" >&2
fi

version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="$IMAGE_REPO:$version"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$revision" != unknown && -n "$(git status --porcelain 2>/dev/null)" ]]; then
  revision+="-dirty"
fi
old_id="$(buildah inspect --type image --format '{{.FromImageID}}' "$IMAGE" 2>/dev/null || true)"

# Fast path: the image under $IMAGE was built from these very inputs (base, wheelhouse,
# commit, and the content of every file git does not ignore). RELEASE_BOT_IMAGE_REBUILD=1 forces.
inputs="$(python3 - "$base_digest" "$WHEELHOUSE" "$version" "$revision" <<'EOF'
import hashlib
import subprocess
import sys
from pathlib import Path

digest = hashlib.sha256("\n".join(sys.argv[1:]).encode())
listed = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    capture_output=True,
    check=False,
)
if listed.returncode != 0:
    sys.exit()  # not a git checkout: always build
for name in sorted(set(listed.stdout.split(b"\0")) - {b""}):
    path = Path(name.decode())
    if path.is_file():
        digest.update(name + b"\0" + path.read_bytes() + b"\0")
print(digest.hexdigest()[:20])
EOF
)"
built_from="$(buildah inspect --type image \
  --format '{{index .OCIv1.Config.Labels "release-bot.build-inputs"}}' "$IMAGE" 2>/dev/null || true)"
if [[ -n "$inputs" && "$built_from" == "$inputs" && "${RELEASE_BOT_IMAGE_REBUILD:-}" != 1 ]]; then
  echo "image unchanged: its inputs are $inputs" >&2
  echo "image: $IMAGE"
  echo "id: $old_id"
  echo "size: $(buildah images --format '{{.Size}}' "$IMAGE")"
  exit 0
fi

t0=$(date +%s)
# Offline by construction: chroot isolation shares the host's network (buildah refuses
# --network none with it), so the whole build runs in a new network namespace of its own,
# which has no interface but a down loopback.
unshare --net -- buildah build --quiet --isolation chroot --pull=never \
  --file deploy/Containerfile \
  --build-context wheels="$WHEELHOUSE" \
  --build-arg BASE_IMAGE="$BASE_TAG" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --label org.opencontainers.image.base.digest="$base_digest" \
  --label release-bot.build-inputs="$inputs" \
  --tag "$IMAGE" . >"$WORK/build.log" 2>&1 || {
  cat "$WORK/build.log" >&2
  exit 1
}
image_id="$(buildah inspect --type image --format '{{.FromImageID}}' "$IMAGE")"
echo "image built in $(($(date +%s) - t0)) s" >&2
# The image this one replaced under the same tag is left untagged: drop it.
if [[ -n "$old_id" && "$old_id" != "$image_id" ]]; then
  buildah rmi "$old_id" >/dev/null 2>&1 || true
fi

size="$(buildah images --format '{{.Size}}' "$IMAGE")"
echo "image: $IMAGE"
echo "id: $image_id"
echo "size: $size"
echo "total $(($(date +%s) - started)) s" >&2
