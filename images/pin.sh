#!/usr/bin/env bash
# `make -C images pin`: resolve every base of bases.lock to a digest and record it there.
# Needs the registry: when a reference cannot be resolved, it says so, leaves bases.lock as it was
# and fails (a digest is never guessed or invented).
# Environment: ENGINE (default podman, with the project's containers.conf and runc).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/lib.sh
source "$here/../scripts/lib.sh"
LOCK="$here/bases.lock"

resolve() {
  # Pull the reference and read the registry's manifest digest for it.
  local ref="$1" digest
  if [[ -n "${ENGINE:-}" && "${ENGINE}" != podman ]]; then
    "$ENGINE" pull --quiet "$ref" >/dev/null 2>&1 || return 1
    digest="$("$ENGINE" image inspect --format '{{index .RepoDigests 0}}' "$ref" 2>/dev/null)" || return 1
    digest="${digest##*@}"
  else
    pm pull --quiet "$ref" >/dev/null 2>&1 || return 1
    digest="$(pm image inspect --format '{{.Digest}}' "$ref" 2>/dev/null)" || return 1
  fi
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || return 1
  printf '%s\n' "$digest"
}

tmp="$(mktemp "$LOCK.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
failed=()
while IFS= read -r line; do
  if [[ "$line" =~ ^[[:space:]]*(#|$) ]]; then
    printf '%s\n' "$line" >>"$tmp"
    continue
  fi
  read -r name ref old <<<"$line"
  if digest="$(resolve "$ref")"; then
    step "$name: $ref -> $digest${old:+ (was $old)}"
    printf '%s %s %s\n' "$name" "$ref" "$digest" >>"$tmp"
  else
    warn "$name: cannot resolve $ref (registry unreachable or reference unknown); keeping '$old'"
    printf '%s\n' "$line" >>"$tmp"
    failed+=("$ref")
  fi
done <"$LOCK"
if ((${#failed[@]} > 0)); then
  die "not pinned: ${failed[*]} (no registry reachable from here?); bases.lock left unchanged"
fi
mv -f "$tmp" "$LOCK"
trap - EXIT
step "bases.lock updated: commit it"
