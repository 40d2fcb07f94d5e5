#!/usr/bin/env bash
# Build offline runtime images (no container registry needed), one after the other.
# Usage: images/offline/build-all.sh [--force] [NAME...]
#   NAME: python node multi go java rust; none given: the default images (python node multi)
#   plus the optional ones listed in SANDBOXSHIFT_OFFLINE_OPTIONAL (default "go java rust";
#   set it to "" to build only the default images).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"

flags=()
names=()
for arg in "$@"; do
  case "$arg" in
    --force) flags+=(--force) ;;
    -*) die "unknown option: $arg (usage: $0 [--force] [NAME...])" ;;
    *) names+=("$arg") ;;
  esac
done
if ((${#names[@]} == 0)); then
  read -r -a optional <<<"${SANDBOXSHIFT_OFFLINE_OPTIONAL-go java rust}"
  names=(python node multi "${optional[@]}")
fi

step "building offline runtime images: ${names[*]}"
for name in "${names[@]}"; do
  start=$SECONDS
  bash "$here/build.sh" "$name" "${flags[@]}"
  step "offline image $name: $((SECONDS - start)) s"
done
