#!/usr/bin/env bash
# Build one offline runtime image without any container registry.
#
# Usage: images/offline/build.sh NAME [--force]
#   NAME      python | node | multi (the default images) | go | java | rust (optional, V2)
#   --force   rebuild even if the image already exists (the caches are still used)
# Environment:
#   SANDBOXSHIFT_CACHE_DIR     cached base root, .debs and npm tarballs (default /var/cache/sandboxshift)
#   SANDBOXSHIFT_DEBIAN_MIRROR Debian mirror for debootstrap (default: debootstrap's default mirror)
#
# Every image: the shared cached Debian bookworm minbase root + its toolchain, no apt/dpkg, user
# nonroot 65532 with HOME=/workspace/.home, WORKDIR /workspace, no CMD/ENTRYPOINT/EXPOSE/VOLUME,
# the relay at /usr/local/bin/sbx-relay (egress and stdin modes, label io.sandboxshift.relay.stdin=1);
# tagged with the version really inside (checked
# before the image gets its name) and labelled with versions, base and build mode.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=images/offline/lib.sh
source "$here/lib.sh"

NAME=""
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h | --help)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) die "unknown option: $arg (usage: $0 NAME [--force])" ;;
    *)
      [[ -z "$NAME" ]] || die "one image per run (usage: $0 NAME [--force])"
      NAME="$arg"
      ;;
  esac
done

# Per image: tag, Debian packages, whether Node comes in, and the runtimes whose versions the tag
# promises: "label@command printing the version@series the tag promises".
APT=()
NODE=0
RUNTIMES=()
ENVS=()
case "$NAME" in
  python)
    IMAGE="sandboxshift/runtime-python:3.11"
    APT=(python3 python3-pip python3-venv ca-certificates)
    RUNTIMES=("python@python3 --version@Python 3.11.")
    ;;
  node)
    IMAGE="sandboxshift/runtime-node:20"
    APT=(ca-certificates)
    NODE=1
    RUNTIMES=("node@node --version@v20.")
    ;;
  multi)
    IMAGE="sandboxshift/runtime-multi:latest"
    APT=(python3 python3-pip python3-venv ca-certificates)
    NODE=1
    RUNTIMES=("python@python3 --version@Python 3.11." "node@node --version@v20.")
    ;;
  go)
    IMAGE="sandboxshift/runtime-go:1.19"
    APT=(golang-go ca-certificates)
    RUNTIMES=("go@go version@go version go1.19.")
    ENVS=("GOPATH=/workspace/.home/go" "GOTOOLCHAIN=local")
    ;;
  java)
    IMAGE="sandboxshift/runtime-java:17"
    APT=(openjdk-17-jdk-headless ca-certificates)
    RUNTIMES=("java@java -version 2>&1 | head -n1@openjdk version \"17.")
    ENVS=("JAVA_HOME=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)")
    ;;
  rust)
    IMAGE="sandboxshift/runtime-rust:1.63"
    APT=(rustc cargo gcc libc6-dev ca-certificates)
    RUNTIMES=("rust@rustc --version@rustc 1.63.")
    ENVS=("CARGO_HOME=/workspace/.home/.cargo")
    ;;
  "") die "usage: $0 NAME [--force] (NAME: python node multi go java rust)" ;;
  *) die "unknown image '$NAME' (python node multi go java rust)" ;;
esac

require_root "building $IMAGE (debootstrap, chroot, rootful podman)"
ensure_apt_packages podman runc debootstrap gcc libc6-dev

# The recipe: this script, its helpers and the relay source. An image built from another recipe
# (say, before a package was added) is rebuilt rather than kept.
RECIPE="$(cat "$here/build.sh" "$here/lib.sh" "$SANDBOXSHIFT_ROOT/images/relay/sbx-relay.c" | sha256sum | cut -c1-16)"
if [[ $FORCE -eq 0 ]] && pm image exists "$IMAGE"; then
  built_recipe="$(pm image inspect --format '{{index .Labels "io.sandboxshift.recipe"}}' "$IMAGE" 2>/dev/null || true)"
  if [[ "$built_recipe" == "$RECIPE" ]]; then
    step "image $IMAGE already exists (recipe $RECIPE): skipping the build (use --force to rebuild)"
    exit 0
  fi
  step "image $IMAGE was built from another recipe (${built_recipe:-none} → $RECIPE): rebuilding it"
fi

START_SECONDS=$SECONDS
WORK=""
TMP_TAG=""
cleanup() {
  local rc=$?
  if [[ -n "$TMP_TAG" ]] && pm image exists "$TMP_TAG" 2>/dev/null; then
    pm rmi "$TMP_TAG" >/dev/null 2>&1 || true
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    unmount_under "$WORK"
    if has_mounts_under "$WORK"; then
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

mkdir -p /var/tmp
WORK="$(mktemp -d "/var/tmp/sandboxshift-$NAME.XXXXXX")"
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"

# ---- 1. shared base root + this image's toolchain --------------------------------------------
offline_base "$ROOTFS"
((${#APT[@]} == 0)) || offline_apt "$ROOTFS" "${APT[@]}"
((NODE == 0)) || offline_node "$ROOTFS"

PATH_DIRS="/workspace/.home/.local/bin"
if [[ " ${APT[*]} " == *" python3 "* ]]; then
  # PEP 668: Debian marks its Python "externally managed" so that pip does not fight apt. These
  # images have no apt and a read-only root, so pip can only install into HOME (pip falls back
  # to --user on its own when site-packages is not writable) or into a venv: drop the marker
  # rather than setting PIP_USER/PIP_BREAK_SYSTEM_PACKAGES, which would also break venvs.
  rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
  ENVS+=("PYTHONUNBUFFERED=1")
fi
if ((NODE == 1)); then
  # `npm install -g` under a read-only root: the global prefix lives in HOME (the workspace).
  PATH_DIRS="$PATH_DIRS:/workspace/.home/.npm-global/bin"
  ENVS+=("NPM_CONFIG_PREFIX=/workspace/.home/.npm-global" "NPM_CONFIG_UPDATE_NOTIFIER=false")
fi
[[ "$NAME" == go ]] && PATH_DIRS="$PATH_DIRS:/workspace/.home/go/bin"
[[ "$NAME" == rust ]] && PATH_DIRS="$PATH_DIRS:/workspace/.home/.cargo/bin"

# ---- 2. versions really inside (the tag must not promise another) -----------------------------
LABELS=()
VERSION_SCRIPT="id -u; pwd"
EXPECTED=("$NONROOT_UID" /workspace)
for rt in "${RUNTIMES[@]}"; do
  IFS='@' read -r label cmd series <<<"$rt"
  out="$(in_root "$ROOTFS" "$cmd" 2>&1)" ||
    die "$cmd failed in the image root: $out"
  [[ "$out" == "$series"* ]] || die "$NAME: '$cmd' says '$out', but $IMAGE promises '$series*'"
  version="$(grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' <<<"$out" | head -n1)"
  step "$label in the root: $version"
  LABELS+=("io.sandboxshift.$label.version=$version")
  VERSION_SCRIPT="$VERSION_SCRIPT; $cmd"
  EXPECTED+=("$out")
done
if ((NODE == 1)); then
  npm_version="$(in_root "$ROOTFS" 'npm --version' 2>&1)" ||
    die "npm does not run in the image root: $npm_version"
  LABELS+=("io.sandboxshift.npm.version=$npm_version")
fi
if [[ " ${APT[*]} " == *" python3 "* ]]; then
  in_root "$ROOTFS" 'python3 -m pip --version >/dev/null && python3 -c "import venv, ensurepip"' ||
    die "pip or venv does not work in the image root"
fi

offline_finish "$ROOTFS"
step "root filesystem: $(du -sh --apparent-size "$ROOTFS" | cut -f1)"

# ---- 3. import as an image --------------------------------------------------------------------
REPO="${IMAGE%%:*}"
TMP_TAG="localhost/$REPO:build-$$"
OLD_ID="$(pm image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
changes=(
  --change "USER $NONROOT_UID:$NONROOT_UID"
  --change "WORKDIR /workspace"
  --change "ENV HOME=/workspace/.home"
  --change "ENV PATH=$PATH_DIRS:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --change "LABEL io.sandboxshift.image=$NAME"
  --change "LABEL io.sandboxshift.build=offline"
  --change "LABEL io.sandboxshift.base=\"debian:$OFFLINE_SUITE (debootstrap $OFFLINE_VARIANT)\""
  --change "LABEL io.sandboxshift.relay=/usr/local/bin/sbx-relay"
  --change "LABEL io.sandboxshift.relay.stdin=1"
  --change "LABEL io.sandboxshift.recipe=$RECIPE"
)
for e in "${ENVS[@]}"; do changes+=(--change "ENV $e"); done
for l in "${LABELS[@]}"; do changes+=(--change "LABEL $l"); done
step "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -cf - . |
  pm import --quiet --message "SandboxShift offline runtime-$NAME: Debian $OFFLINE_SUITE debootstrap $OFFLINE_VARIANT; ${LABELS[*]}" \
    "${changes[@]}" - "$TMP_TAG" >/dev/null ||
  die "podman import failed (needs: apt-get install podman runc)"

# ---- 4. verify the contract before giving the image its real name -----------------------------
step "verifying $TMP_TAG"
image_config_ok "$TMP_TAG"
out="$(pm run --rm --network none --read-only "$TMP_TAG" /bin/sh -c "$VERSION_SCRIPT" 2>&1)" ||
  die "test run of $TMP_TAG failed: $out"
expected="$(printf '%s\n' "${EXPECTED[@]}")"
[[ "$out" == "$expected" ]] || die "unexpected output from the image (want '$expected'): $out"
printf '%s\n' "$out" | sed 's/^/[sandboxshift]   /' >&2
extra="$(pm run --rm --network none "$TMP_TAG" /bin/sh -c \
  'test -x /usr/local/bin/sbx-relay && command -v unshare >/dev/null && test -s /etc/ssl/certs/ca-certificates.crt &&
   ! command -v apt-get >/dev/null && ! command -v dpkg >/dev/null && echo ok' 2>&1)" || true
[[ "$extra" == "ok" ]] || die "image check failed (relay, unshare and the CA bundle present, apt-get and dpkg absent): $extra"
# The relay's stdin mode: one frame ("ok\n") and the EOF frame through a named pipe.
stdin_out="$(pm run --rm --network none "$TMP_TAG" /bin/sh -c \
  'mkfifo /tmp/in && { printf "\000\003ok\n\000\000" >/tmp/in & } && /usr/local/bin/sbx-relay --stdin /tmp/in -- /bin/cat' 2>&1)" || true
[[ "$stdin_out" == "ok" ]] || die "image check failed (the relay's stdin mode: a frame through a named pipe, then EOF): $stdin_out"

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
step "built $IMAGE (${NEW_ID:0:12}, $size; ${LABELS[*]}) in $((SECONDS - START_SECONDS)) s"
