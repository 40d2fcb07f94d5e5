#!/usr/bin/env bash
# Build the server's container image offline (no container registry):
#   1. the base sandboxshift/server-base:bookworm: the cached Debian bookworm minbase root of the
#      offline runtime images plus e2fsprogs, git, ca-certificates and Node 20 (skipped when it
#      exists, unless --force);
#   2. a build context: dist/, package.json, package-lock.json, deploy/ and the production
#      dependencies (node_modules pruned with `npm prune --omit=dev`, which needs no registry);
#   3. `podman build -f deploy/Containerfile` tagged sandboxshift/server:<package version>.
# Usage: deploy/container/build.sh [--force] [--tag TAG]   (run `npm ci && npm run build` first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=images/offline/lib.sh
source "$here/../../images/offline/lib.sh"

FORCE=0
TAG=""
while (($#)); do
  case "$1" in
    --force) FORCE=1 ;;
    --tag) TAG="${2:?--tag needs a value}"; shift ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (usage: $0 [--force] [--tag TAG])" ;;
  esac
  shift
done
BASE_IMAGE="sandboxshift/server-base:bookworm"
version="$(node -p 'require(process.argv[1]).version' "$SANDBOXSHIFT_ROOT/package.json")"
TAG="${TAG:-sandboxshift/server:$version}"

require_root "building the server image (chroot, rootful podman)"
[[ -f "$SANDBOXSHIFT_ROOT/dist/src/cli.js" ]] || die "dist/src/cli.js is missing: run npm ci && npm run build first"

WORK=""
cleanup() {
  local rc=$?
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    unmount_under "$WORK"
    has_mounts_under "$WORK" || rm -rf --one-file-system "$WORK"
  fi
  return $rc
}
trap cleanup EXIT
mkdir -p /var/tmp
WORK="$(mktemp -d /var/tmp/sandboxshift-server.XXXXXX)"

if [[ $FORCE -eq 1 ]] || ! pm image exists "$BASE_IMAGE"; then
  ROOTFS="$WORK/rootfs"
  mkdir -p "$ROOTFS"
  offline_base "$ROOTFS"
  offline_apt "$ROOTFS" e2fsprogs git ca-certificates
  offline_node "$ROOTFS"
  in_root "$ROOTFS" 'node --version && test -x /usr/sbin/mkfs.ext4 && git --version && test -x /usr/bin/mount && test -x /usr/sbin/losetup' >&2 ||
    die "the server base root lacks node, mkfs.ext4, git or mount"
  rm -f "$ROOTFS"/etc/hostname "$ROOTFS"/etc/resolv.conf
  find "$ROOTFS/dev" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/run" "$ROOTFS/tmp" -xdev -mindepth 1 -delete 2>/dev/null || true
  step "importing the server base as $BASE_IMAGE"
  tar --numeric-owner -C "$ROOTFS" -cf - . |
    pm import --quiet --message "SandboxShift server base: Debian $OFFLINE_SUITE debootstrap $OFFLINE_VARIANT, Node 20, e2fsprogs, git" \
      --change "LABEL io.sandboxshift.base=\"debian:$OFFLINE_SUITE (debootstrap $OFFLINE_VARIANT)\"" \
      - "$BASE_IMAGE" >/dev/null || die "podman import failed"
  rm -rf --one-file-system "$ROOTFS"
else
  step "base image $BASE_IMAGE exists (use --force to rebuild it)"
fi

step "staging the build context"
CTX="$WORK/context"
mkdir -p "$CTX"
cp -a "$SANDBOXSHIFT_ROOT/dist" "$SANDBOXSHIFT_ROOT/deploy" "$SANDBOXSHIFT_ROOT/package.json" "$SANDBOXSHIFT_ROOT/package-lock.json" "$CTX/"
cp -a "$SANDBOXSHIFT_ROOT/node_modules" "$CTX/node_modules"
(cd "$CTX" && npm prune --omit=dev --no-audit --no-fund --offline >/dev/null 2>&1) || die "npm prune --omit=dev failed in the build context"
# Source maps and compiled tests are not part of the server.
rm -rf "$CTX/dist/test"
find "$CTX/dist" -name '*.map' -delete

step "podman build -f deploy/Containerfile -t $TAG"
pm build --quiet --pull=never --build-arg "BASE=localhost/$BASE_IMAGE" -f "$SANDBOXSHIFT_ROOT/deploy/Containerfile" -t "$TAG" "$CTX" >/dev/null ||
  die "podman build failed"
step "built $TAG ($(pm image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1000000 }'))"
