# shellcheck shell=bash
# Shared helpers for SandboxShift's scripts. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"      (from scripts/)
#
# Sourcing sets SANDBOXSHIFT_ROOT (the repository root) and exports CONTAINERS_CONF pointing at
# the project's own deploy/containers.conf, so every podman process the scripts start uses runc,
# explicit ulimits and cgroupfs without touching system-wide configuration.

if [[ -n "${_SANDBOXSHIFT_LIB_SOURCED:-}" ]]; then
  return 0
fi
_SANDBOXSHIFT_LIB_SOURCED=1

SANDBOXSHIFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export SANDBOXSHIFT_ROOT
export CONTAINERS_CONF="$SANDBOXSHIFT_ROOT/deploy/containers.conf"

# Debian packages the project needs on the host. catatonit is the init binary Podman injects for
# `Init: true`; busybox-static lets tests assemble tiny images without a registry; runsc is gVisor
# (engine.isolation / allowedIsolation: gvisor, run through deploy/gvisor/runsc).
# chromium: the web page's browser tests (playwright-core drives Debian's build, /usr/bin/chromium).
# shellcheck disable=SC2034  # used by setup.sh
SANDBOXSHIFT_APT_PACKAGES=(podman runc runsc catatonit debootstrap nftables uidmap curl ca-certificates busybox-static gcc libc6-dev git e2fsprogs make systemd chromium)

# Minimum Node.js (fastify 5 loads ESM-only dependencies through require(esm)).
SANDBOXSHIFT_NODE_MIN="20.19.0"

step() {
  printf '[sandboxshift] %s\n' "$*" >&2
}

warn() {
  printf '[sandboxshift] WARNING: %s\n' "$*" >&2
}

die() {
  printf '[sandboxshift] ERROR: %s\n' "$*" >&2
  exit 1
}

# require_root [WHAT]: stop unless running as root, naming what needs it.
require_root() {
  if [[ "$(id -u)" -ne 0 ]]; then
    die "${1:-this step} needs root (rootful Podman, apt-get, nftables): re-run as root, e.g. sudo $0"
  fi
}

# pm ARGS...: podman with the project's containers.conf and runc, whatever the caller's env says.
pm() {
  CONTAINERS_CONF="$SANDBOXSHIFT_ROOT/deploy/containers.conf" podman --runtime runc "$@"
}

_apt_is_installed() {
  # (No `dpkg -s | grep -q` here: with pipefail, grep's early exit can fail the pipeline.)
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# ensure_apt_packages PKG...: install the Debian packages that are not installed yet.
ensure_apt_packages() {
  local missing=() p
  command -v dpkg >/dev/null 2>&1 ||
    die "dpkg not found: this script supports Debian/Ubuntu hosts; install by hand: $*"
  for p in "$@"; do
    _apt_is_installed "$p" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    step "apt packages present: $*"
    return 0
  fi
  local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
  require_root "installing ${missing[*]} (run: $cmd)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
  step "installing apt packages: ${missing[*]}"
  if [[ -z "${_SANDBOXSHIFT_APT_UPDATED:-}" ]]; then
    step "apt-get update"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update </dev/null; then
      die "apt-get update failed; fix the apt sources, then run: $cmd"
    fi
    _SANDBOXSHIFT_APT_UPDATED=1
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}" </dev/null; then
    die "apt-get install failed; run by hand: $cmd"
  fi
  for p in "${missing[@]}"; do
    _apt_is_installed "$p" || die "package $p still not installed after apt-get; run: $cmd"
  done
}

# _version_ge A B: true when dotted version A >= B.
_version_ge() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# ensure_node: Node.js >= 20.19 and npm must be on PATH.
ensure_node() {
  local v
  command -v node >/dev/null 2>&1 ||
    die "node not found: install Node.js >= $SANDBOXSHIFT_NODE_MIN (Node 20 LTS; Debian 12's own nodejs package is 18 and too old)"
  v="$(node -p 'process.versions.node')" || die "cannot run node"
  _version_ge "$v" "$SANDBOXSHIFT_NODE_MIN" ||
    die "Node.js $v is too old: install Node.js >= $SANDBOXSHIFT_NODE_MIN (Node 20 LTS; Debian 12's own nodejs package is 18 and too old)"
  command -v npm >/dev/null 2>&1 || die "npm not found: install npm (it ships with Node.js >= $SANDBOXSHIFT_NODE_MIN)"
  step "node $v, npm $(npm --version)"
}

# Stamp that says node_modules matches package.json's dependencies + package-lock.json for this
# Node ABI.
_npm_deps_key() {
  {
    printf 'node-abi=%s arch=%s\n' "$(node -p 'process.versions.modules')" "$(node -p 'process.arch')"
    # Only the fields that decide what gets installed: editing "scripts" must not reinstall.
    node -e '
      const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const keys = ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies",
        "bundleDependencies", "bundledDependencies", "overrides", "workspaces"];
      console.log("package.json " + JSON.stringify(keys.map((k) => [k, p[k] ?? null])));
    ' "$SANDBOXSHIFT_ROOT/package.json"
    if [[ -f "$SANDBOXSHIFT_ROOT/package-lock.json" ]]; then
      printf 'package-lock.json %s\n' "$(sha256sum <"$SANDBOXSHIFT_ROOT/package-lock.json")"
    fi
  } | sha256sum | cut -d' ' -f1
}

# ensure_npm_deps: npm ci (with a lock) or npm install (without), unless node_modules is current.
ensure_npm_deps() {
  local stamp="$SANDBOXSHIFT_ROOT/node_modules/.sandboxshift-deps.stamp" key
  key="$(_npm_deps_key)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    step "npm dependencies up to date (node_modules matches package.json and package-lock.json)"
    return 0
  fi
  # better-sqlite3 is compiled here (its prebuilt download cannot be reached): needs a toolchain.
  local tool missing_tools=()
  for tool in make g++ python3; do
    command -v "$tool" >/dev/null 2>&1 || missing_tools+=("$tool")
  done
  if ((${#missing_tools[@]} > 0)); then
    step "native addon toolchain missing (${missing_tools[*]})"
    ensure_apt_packages build-essential python3
  fi
  export npm_config_build_from_source=true
  (
    cd "$SANDBOXSHIFT_ROOT"
    if [[ -f package-lock.json ]]; then
      step "npm ci (native addons built from source)"
      npm ci --no-audit --no-fund </dev/null ||
        die "npm ci failed (if package.json changed, run 'npm install' and commit package-lock.json; native builds need: apt-get install build-essential python3)"
    else
      step "npm install (no package-lock.json yet; native addons built from source)"
      npm install --no-audit --no-fund </dev/null ||
        die "npm install failed (native builds need: apt-get install build-essential python3)"
    fi
  ) || exit 1
  # npm install may just have written package-lock.json: key again.
  _npm_deps_key >"$stamp"
}

# ensure_build: compile TypeScript to dist/ and bundle the web page into dist/ui (skipped while
# there are no TypeScript sources yet).
ensure_build() {
  local tsc="$SANDBOXSHIFT_ROOT/node_modules/.bin/tsc"
  [[ -x "$tsc" ]] || die "typescript is not installed in node_modules (run: npm install)"
  if [[ -z "$(find "$SANDBOXSHIFT_ROOT/src" "$SANDBOXSHIFT_ROOT/scripts" "$SANDBOXSHIFT_ROOT/bench" \
      -name '*.ts' ! -name '*.d.ts' -print -quit 2>/dev/null)" ]]; then
    warn "no TypeScript sources under src/, scripts/ or bench/ yet: skipping the build"
    return 0
  fi
  step "compiling TypeScript (tsc -p tsconfig.json)"
  (cd "$SANDBOXSHIFT_ROOT" && "$tsc" -p tsconfig.json) || die "TypeScript build failed (see the errors above)"
  if [[ -f "$SANDBOXSHIFT_ROOT/dist/scripts/build-ui.js" ]]; then
    step "bundling the web page (esbuild: ui/ -> dist/ui)"
    (cd "$SANDBOXSHIFT_ROOT" && node dist/scripts/build-ui.js) || die "web page bundle failed (see the errors above)"
  fi
}

# _is_our_podman_service PID: the PID is alive and is a `podman ... system service` process.
_is_our_podman_service() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *podman* && "$cmdline" == *" system service "* ]]
}

# start_podman_service SOCKET PIDFILE LOGFILE: a Podman API service (runc, project containers.conf)
# on a unix socket, in the background; returns once /_ping answers OK (at most 20 s).
start_podman_service() {
  local sock="$1" pidfile="$2" logfile="$3" pid i
  [[ $# -eq 3 ]] || die "usage: start_podman_service SOCKET_PATH PIDFILE LOGFILE"
  command -v podman >/dev/null 2>&1 || die "podman not found: apt-get install podman runc"
  command -v runc >/dev/null 2>&1 || die "runc not found: apt-get install runc"
  command -v curl >/dev/null 2>&1 || die "curl not found: apt-get install curl"
  ((${#sock} < 100)) || die "socket path too long for a unix socket (${#sock} bytes): $sock"
  mkdir -p "$(dirname "$sock")" "$(dirname "$pidfile")" "$(dirname "$logfile")"
  # A service left behind by an earlier aborted run of ours (same pidfile): stop it first.
  if [[ -f "$pidfile" ]]; then
    stop_podman_service "$pidfile"
  fi
  rm -f "$sock"
  step "starting Podman API service (runc) on unix://$sock (log: $logfile)"
  # conmon (started by the service) writes an `oom` marker file into its working directory when
  # a container is OOM-killed: run the service in the socket's directory, not the caller's.
  (
    cd "$(dirname "$sock")" &&
      CONTAINERS_CONF="$SANDBOXSHIFT_ROOT/deploy/containers.conf" \
        exec podman --runtime runc system service --time=0 "unix://$sock"
  ) </dev/null >"$logfile" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$pidfile"
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      rm -f "$pidfile"
      die "the Podman API service exited at start (log: $logfile); check: apt-get install podman runc"
    fi
    if [[ -S "$sock" ]] &&
      [[ "$(curl -sS --noproxy '*' --max-time 2 --unix-socket "$sock" http://d/_ping 2>/dev/null)" == "OK" ]]; then
      step "Podman API service ready (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  tail -n 20 "$logfile" >&2 || true
  stop_podman_service "$pidfile"
  die "the Podman API service did not answer /_ping within 20 s (log: $logfile)"
}

# stop_podman_service PIDFILE: stop the service whose PID is in PIDFILE (and nothing else).
stop_podman_service() {
  local pidfile="$1" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
  if _is_our_podman_service "$pid"; then
    step "stopping Podman API service (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "Podman API service (pid $pid) ignored SIGTERM for 10 s: sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it if it is our own child (no-op otherwise).
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
