#!/usr/bin/env bash
# Build sandboxshift/runtime-python:3.11 without any container registry.
#
# Root filesystem: Debian bookworm made by `debootstrap --variant=minbase` from Debian's own
# mirror (python3 3.11, pip, venv), with the package manager and documentation removed and the
# Chainguard-style `nonroot` user (65532) added; imported with `podman import` into a single-layer
# image that meets the runtime image contract (DESIGN 2): /bin/sh, USER 65532:65532,
# WORKDIR /workspace, no CMD/ENTRYPOINT/EXPOSE/VOLUME.
#
# Usage: images/offline/build-python.sh [--force]
#   --force   rebuild even if the image already exists (the debootstrap cache is still used)
# Environment:
#   SANDBOXSHIFT_CACHE_DIR     where the debootstrap result is cached (default /var/cache/sandboxshift)
#   SANDBOXSHIFT_DEBIAN_MIRROR Debian mirror for debootstrap (default: debootstrap's default mirror)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)/scripts/lib.sh"

IMAGE="sandboxshift/runtime-python:3.11"
PY_SERIES="3.11"
SUITE="bookworm"
VARIANT="minbase"
INCLUDE="python3,python3-pip,python3-venv"
MIRROR="${SANDBOXSHIFT_DEBIAN_MIRROR:-}"
CACHE_DIR="${SANDBOXSHIFT_CACHE_DIR:-/var/cache/sandboxshift}"
NONROOT_UID=65532
# Bump when the way the cached debootstrap tree is produced changes.
CACHE_FORMAT=1

FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h | --help)
      sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument: $arg (usage: $0 [--force])" ;;
  esac
done

require_root "building $IMAGE (debootstrap, rootful podman)"
ensure_apt_packages podman runc debootstrap gcc libc6-dev

if [[ $FORCE -eq 0 ]] && pm image exists "$IMAGE"; then
  step "image $IMAGE already exists: skipping the build (use --force to rebuild)"
  exit 0
fi

START_SECONDS=$SECONDS
ARCH="$(dpkg --print-architecture)"
WORK=""
TMP_TAG=""

# Unmount anything left mounted under DIR (debootstrap mounts /proc and /sys in the target; an
# interrupted run can leave them), deepest first.
unmount_under() {
  local dir="$1" mnt
  [[ -d "$dir" ]] || return 0
  while read -r mnt; do
    [[ -n "$mnt" ]] || continue
    umount -l "$mnt" 2>/dev/null || warn "could not unmount $mnt"
  done < <(awk -v d="$dir/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

cleanup() {
  local rc=$?
  if [[ -n "$TMP_TAG" ]] && pm image exists "$TMP_TAG" 2>/dev/null; then
    pm rmi "$TMP_TAG" >/dev/null 2>&1 || true
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    unmount_under "$WORK"
    if awk -v d="$WORK/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
      warn "mounts remain under $WORK: leaving it in place (unmount and remove it by hand)"
    else
      rm -rf --one-file-system "$WORK"
    fi
  fi
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CACHE_DIR" /var/tmp
WORK="$(mktemp -d /var/tmp/sandboxshift-python.XXXXXX)"
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"

# ---- 1. Debian minbase root (cached as a tarball keyed by everything that shapes it) ----------
CACHE_KEY="$(printf 'format=%s suite=%s variant=%s arch=%s include=%s mirror=%s\n' \
  "$CACHE_FORMAT" "$SUITE" "$VARIANT" "$ARCH" "$INCLUDE" "${MIRROR:-default}" | sha256sum | cut -c1-16)"
CACHE_TAR="$CACHE_DIR/debootstrap-$SUITE-$VARIANT-$ARCH-$CACHE_KEY.tar"

if [[ -f "$CACHE_TAR" ]]; then
  step "unpacking cached debootstrap tree $CACHE_TAR"
  tar --numeric-owner -xpf "$CACHE_TAR" -C "$ROOTFS"
else
  step "debootstrap --variant=$VARIANT --include=$INCLUDE $SUITE (Debian mirror: ${MIRROR:-debootstrap default}; about a minute)"
  debootstrap_args=(--variant="$VARIANT" --include="$INCLUDE" --arch="$ARCH" "$SUITE" "$ROOTFS")
  [[ -n "$MIRROR" ]] && debootstrap_args+=("$MIRROR")
  if ! debootstrap "${debootstrap_args[@]}" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2 || true
    [[ -f "$ROOTFS/debootstrap/debootstrap.log" ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (it needs the Debian mirror and: apt-get install debootstrap)"
  fi
  unmount_under "$ROOTFS"
  step "caching the debootstrap tree as $CACHE_TAR"
  tar --numeric-owner -C "$ROOTFS" -cf "$CACHE_TAR.tmp.$$" .
  mv -f "$CACHE_TAR.tmp.$$" "$CACHE_TAR"
fi

unmount_under "$ROOTFS"
if awk -v d="$ROOTFS/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
  die "mounts remain under $ROOTFS after debootstrap: refusing to modify it"
fi

# ---- 2. Shape the root: nonroot user, /workspace, no package manager, no docs ------------------
step "customising the root filesystem"
[[ -x "$ROOTFS/usr/bin/python3" ]] || die "python3 missing from the debootstrap tree (cache $CACHE_TAR may be broken: delete it)"

PY_VERSION="$(chroot "$ROOTFS" /usr/bin/python3 --version 2>&1 | awk '{print $2}')"
[[ "$PY_VERSION" == "$PY_SERIES".* ]] ||
  die "debootstrap gave python3 $PY_VERSION, but the image is tagged :$PY_SERIES"
step "python3 in the root: $PY_VERSION"

# Record what is inside before dpkg's database goes (the image keeps no package manager).
mkdir -p "$ROOTFS/usr/share/sandboxshift"
# shellcheck disable=SC2016  # dpkg-query's own format, not shell
chroot "$ROOTFS" /usr/bin/dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' \
  >"$ROOTFS/usr/share/sandboxshift/packages.tsv"

# nonroot user and group (Chainguard's UID/GID), HOME inside the workspace.
grep -q "^nonroot:" "$ROOTFS/etc/group" ||
  printf 'nonroot:x:%s:\n' "$NONROOT_UID" >>"$ROOTFS/etc/group"
grep -q "^nonroot:" "$ROOTFS/etc/passwd" ||
  printf 'nonroot:x:%s:%s:nonroot:/workspace/.home:/bin/sh\n' "$NONROOT_UID" "$NONROOT_UID" >>"$ROOTFS/etc/passwd"
install -d -m 0755 -o "$NONROOT_UID" -g "$NONROOT_UID" "$ROOTFS/workspace" "$ROOTFS/workspace/.home"

# No package manager: binaries, libraries, state, caches, configuration and logs of apt and dpkg.
rm -rf "$ROOTFS"/usr/bin/apt* "$ROOTFS"/usr/bin/dpkg* "$ROOTFS"/usr/sbin/dpkg* \
  "$ROOTFS"/usr/lib/apt "$ROOTFS"/usr/lib/dpkg "$ROOTFS"/usr/libexec/dpkg "$ROOTFS"/usr/share/dpkg \
  "$ROOTFS"/usr/lib/*/libapt-* \
  "$ROOTFS"/var/lib/dpkg "$ROOTFS"/var/lib/apt "$ROOTFS"/var/cache/apt \
  "$ROOTFS"/etc/apt "$ROOTFS"/etc/dpkg "$ROOTFS"/etc/cron.daily/apt-compat "$ROOTFS"/etc/cron.daily/dpkg \
  "$ROOTFS"/etc/logrotate.d/apt "$ROOTFS"/etc/logrotate.d/dpkg \
  "$ROOTFS"/var/log/apt "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/alternatives.log \
  "$ROOTFS"/var/log/bootstrap.log "$ROOTFS"/debootstrap

# Documentation, man pages, translations (copyright notices are kept).
if [[ -d "$ROOTFS/usr/share/doc" ]]; then
  find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
fi
rm -rf "$ROOTFS"/usr/share/man "$ROOTFS"/usr/share/info "$ROOTFS"/usr/share/lintian \
  "$ROOTFS"/usr/share/linda "$ROOTFS"/usr/share/bug
if [[ -d "$ROOTFS/usr/share/locale" ]]; then
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
fi

# The egress relay (images/relay): the in-sandbox end of the proxy path for allowlisted tasks.
step "compiling the egress relay (images/relay/sbx-relay.c, static)"
install -d -m 0755 "$ROOTFS/usr/local/bin"
gcc -static -Os -s -Wall -o "$ROOTFS/usr/local/bin/sbx-relay" "$SANDBOXSHIFT_ROOT/images/relay/sbx-relay.c" ||
  die "could not compile the egress relay (needs: apt-get install gcc libc6-dev)"
chmod 0755 "$ROOTFS/usr/local/bin/sbx-relay"

# What the contract and the runner need must still be there.
for bin in /bin/sh /usr/bin/unshare /usr/bin/python3 /usr/bin/env /usr/local/bin/sbx-relay; do
  [[ -e "$ROOTFS$bin" ]] || die "$bin missing from the image root"
done
chroot "$ROOTFS" /bin/sh -c 'python3 -m pip --version >/dev/null && python3 -c "import venv"' ||
  die "pip or venv does not work in the image root"
for bin in apt apt-get dpkg; do
  [[ ! -e "$ROOTFS/usr/bin/$bin" ]] || die "$bin still present in the image root"
done
# Host leftovers and runtime-owned paths: Podman injects /etc/hosts, /etc/hostname and
# /etc/resolv.conf and mounts its own /dev, /proc and /sys.
rm -f "$ROOTFS"/etc/hostname "$ROOTFS"/etc/resolv.conf
: >"$ROOTFS/etc/machine-id"
find "$ROOTFS/dev" "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/run" -xdev -mindepth 1 -delete 2>/dev/null || true
find "$ROOTFS/tmp" "$ROOTFS/var/tmp" "$ROOTFS/var/cache/debconf" -xdev -mindepth 1 -delete 2>/dev/null || true
find "$ROOTFS/var/log" -xdev -mindepth 1 -type f -delete 2>/dev/null || true

step "root filesystem: $(du -sh --apparent-size "$ROOTFS" | cut -f1)"

# ---- 3. Import as an image -----------------------------------------------------------------
TMP_TAG="localhost/sandboxshift/runtime-python:build-$$"
OLD_ID="$(pm image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
step "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -cf - . |
  pm import \
    --message "SandboxShift offline runtime-python: Debian $SUITE debootstrap $VARIANT, python3 $PY_VERSION" \
    --change "USER $NONROOT_UID:$NONROOT_UID" \
    --change "WORKDIR /workspace" \
    --change "ENV HOME=/workspace/.home" \
    --change "ENV PATH=/workspace/.home/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV PIP_USER=1" \
    --change "ENV PIP_BREAK_SYSTEM_PACKAGES=1" \
    --change "ENV PYTHONUNBUFFERED=1" \
    --change "LABEL io.sandboxshift.image=python" \
    --change "LABEL io.sandboxshift.build=offline" \
    --change "LABEL io.sandboxshift.base=\"debian:$SUITE (debootstrap $VARIANT)\"" \
    --change "LABEL io.sandboxshift.python.version=$PY_VERSION" \
    --change "LABEL io.sandboxshift.relay=/usr/local/bin/sbx-relay" \
    - "$TMP_TAG" >/dev/null ||
  die "podman import failed (needs: apt-get install podman runc)"

# ---- 4. Verify the contract before giving the image its real name ----------------------------
step "verifying $TMP_TAG"
config="$(pm image inspect --format '{{json .Config.Cmd}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.User}}|{{.Config.WorkingDir}}' "$TMP_TAG")"
[[ "$config" == "null|null|null|null|65532:65532|/workspace" ]] ||
  die "image config does not meet the contract (Cmd|Entrypoint|ExposedPorts|Volumes|User|WorkingDir): $config"
out="$(pm run --rm --network none "$TMP_TAG" /bin/sh -c 'id -u; pwd; python3 --version' 2>&1)" ||
  die "test run of $TMP_TAG failed: $out"
expected="$(printf '%s\n%s\n%s' "$NONROOT_UID" /workspace "Python $PY_VERSION")"
[[ "$out" == "$expected" ]] || die "unexpected output from the image (want '$expected'): $out"
printf '%s\n' "$out" | sed 's/^/[sandboxshift]   /' >&2
extra="$(pm run --rm --network none "$TMP_TAG" /bin/sh -c \
  'command -v unshare >/dev/null && python3 -m pip --version >/dev/null &&
   ! command -v apt-get >/dev/null && ! command -v dpkg >/dev/null && echo ok' 2>&1)" || true
[[ "$extra" == "ok" ]] || die "image check failed (unshare and pip present, apt-get and dpkg absent): $extra"

pm tag "$TMP_TAG" "$IMAGE"
pm untag "$TMP_TAG" "$TMP_TAG" >/dev/null
TMP_TAG=""
NEW_ID="$(pm image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then
  # The previous build lost its name; remove it unless a container still uses it.
  if pm rmi "$OLD_ID" >/dev/null 2>&1; then
    step "removed the previous build ${OLD_ID:0:12}"
  fi
fi

size="$(pm image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1000000 }')"
step "built $IMAGE (${NEW_ID:0:12}, $size, python3 $PY_VERSION) in $((SECONDS - START_SECONDS)) s"
