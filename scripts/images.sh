#!/usr/bin/env bash
# The image step of scripts/setup.sh: make sure the runtime images exist and tell the server which
# tags this machine has.
#
#   - The default images (python, node, multi) must exist. When one is missing, the Chainguard
#     registry build (images/<name>/Dockerfile, `make -C images build-all`) is used if the
#     registry answers; otherwise (air-gapped hosts, this project's CI) the offline build
#     (images/offline/build-all.sh: Debian packages, no registry), and the step says which.
#   - Offline, the optional V2 images (go, java, rust; Debian's Go 1.19, OpenJDK 17, Rust 1.63)
#     are built too unless SANDBOXSHIFT_OFFLINE_OPTIONAL says otherwise.
#   - Images that exist are never rebuilt (re-runs take a second or two).
#   - The offline tags are recorded in <data dir>/images.json (images/offline/record.sh), which
#     the server reads on top of its built-in image table.
# Environment:
#   SANDBOXSHIFT_IMAGE_MODE       auto (default) | offline | registry
#   SANDBOXSHIFT_OFFLINE_OPTIONAL optional offline images to build (default "go java rust"; "" for none)
#   SANDBOXSHIFT_DATA_DIR         the server's data directory (default <repo>/.sandboxshift-data,
#                                 the server's default when started by `npm start`)
#   SANDBOXSHIFT_REGISTRY_PROBE   URL whose answer means the registry is reachable (default https://cgr.dev/v2/)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

MODE="${SANDBOXSHIFT_IMAGE_MODE:-auto}"
DATA_DIR="${SANDBOXSHIFT_DATA_DIR:-$SANDBOXSHIFT_ROOT/.sandboxshift-data}"
PROBE="${SANDBOXSHIFT_REGISTRY_PROBE:-https://cgr.dev/v2/}"
DEFAULT_IMAGES=(sandboxshift/runtime-python:3.11 sandboxshift/runtime-node:20 sandboxshift/runtime-multi:latest)

registry_reachable() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 8 "$PROBE" 2>/dev/null || true)"
  [[ -n "$code" && "$code" != "000" ]]
}

missing=()
for image in "${DEFAULT_IMAGES[@]}"; do
  pm image exists "$image" || missing+=("$image")
done

case "$MODE" in
  auto)
    if ((${#missing[@]} == 0)); then
      step "default runtime images present: ${DEFAULT_IMAGES[*]}"
      # How they were built decides the record (an offline set gets its tags recorded).
      build="$(pm image inspect --format '{{index .Labels "io.sandboxshift.build"}}' "${DEFAULT_IMAGES[0]}" 2>/dev/null || true)"
      [[ "$build" == "registry" ]] && MODE=registry || MODE=offline
    elif registry_reachable; then
      step "missing: ${missing[*]}; the registry answers ($PROBE): building from images/<name>/Dockerfile"
      MODE=registry
    else
      step "missing: ${missing[*]}; the Chainguard registry cannot be reached ($PROBE): building the runtime images OFFLINE from Debian packages (images/offline/README.md)"
      MODE=offline
    fi
    ;;
  offline | registry) ;;
  *) die "SANDBOXSHIFT_IMAGE_MODE must be auto, offline or registry (got '$MODE')" ;;
esac

if [[ "$MODE" == registry ]]; then
  ((${#missing[@]} == 0)) || make -C "$SANDBOXSHIFT_ROOT/images" build-all ||
    die "registry build failed; build offline instead: SANDBOXSHIFT_IMAGE_MODE=offline npm start"
  # The built-in table names the registry tags: no record needed, and a stale one must go.
  if [[ -f "$DATA_DIR/images.json" ]]; then
    step "registry images: the server's built-in image table applies; removing the offline record $DATA_DIR/images.json"
    rm -f "$DATA_DIR/images.json"
  fi
else
  bash "$SANDBOXSHIFT_ROOT/images/offline/build-all.sh"
  bash "$SANDBOXSHIFT_ROOT/images/offline/record.sh" "$DATA_DIR"
fi
