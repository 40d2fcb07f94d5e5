#!/usr/bin/env bash
# Prepare this machine for SandboxShift; idempotent, used by `npm start` and `npm test`.
#   - root, and the Debian packages: podman, runc, runsc (gVisor), debootstrap, nftables, ... (apt-get)
#   - Node.js >= 20.19, npm dependencies (native addons built from source), TypeScript build
#   - the runtime images, built when missing (scripts/images.sh: from the registry when it can be
#     reached, else offline from Debian packages) and recorded in the data directory
# Environment: SANDBOXSHIFT_SKIP_IMAGES=1 skips the image step; see scripts/images.sh for the rest.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

step "setup: checking this machine"
require_root "SandboxShift (rootful Podman, nftables)"
ensure_apt_packages "${SANDBOXSHIFT_APT_PACKAGES[@]}"

step "checking podman with runc and the project's containers.conf ($CONTAINERS_CONF)"
runtime="$(pm info --format '{{.Host.OCIRuntime.Name}}' 2>&1)" ||
  die "podman does not work here: $runtime (install: apt-get install podman runc)"
[[ "$runtime" == "runc" ]] || die "podman uses OCI runtime '$runtime', expected runc (apt-get install runc)"

step "checking gVisor: runsc through deploy/gvisor/runsc"
# The whole output first: `| head -n1` would end runsc with SIGPIPE, which pipefail reports.
runsc_out="$(/usr/bin/runsc --version 2>&1)" || die "runsc does not run: $runsc_out (install: apt-get install runsc)"
runsc_version="${runsc_out%%$'\n'*}"
[[ -x "$SANDBOXSHIFT_ROOT/deploy/gvisor/runsc" ]] || die "deploy/gvisor/runsc is missing or not executable (chmod 755 it)"
step "gVisor: $runsc_version"

ensure_node
ensure_npm_deps
ensure_build

if [[ "${SANDBOXSHIFT_SKIP_IMAGES:-0}" == "1" ]]; then
  warn "SANDBOXSHIFT_SKIP_IMAGES=1: not checking the runtime images"
else
  bash "$SANDBOXSHIFT_ROOT/scripts/images.sh"
fi
step "setup: done"
