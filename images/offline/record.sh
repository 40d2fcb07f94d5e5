#!/usr/bin/env bash
# Record which runtime image tags this machine's offline build produces, for the server.
#
# Usage: images/offline/record.sh DATA_DIR
# Writes DATA_DIR/images.json: for every offline image (python node multi go java rust) its real
# tag, the command that builds it here, whether it is present, and the toolchain versions from
# its labels. The server reads the file at start-up on top of its built-in image table
# (src/detection/record.ts), so `go.mod` picks sandboxshift/runtime-go:1.19 here instead of the
# registry image's :1.22 that an offline machine cannot have. No config file is needed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"

DATA_DIR="${1:?usage: $0 DATA_DIR}"

# language-or-multi|tag (the same tags as images/offline/build.sh)
OFFLINE_IMAGES=(
  "python|sandboxshift/runtime-python:3.11"
  "node|sandboxshift/runtime-node:20"
  "multi|sandboxshift/runtime-multi:latest"
  "go|sandboxshift/runtime-go:1.19"
  "java|sandboxshift/runtime-java:17"
  "rust|sandboxshift/runtime-rust:1.63"
)

# shellcheck disable=SC2016  # a Go template for podman, not shell
LABELS_FORMAT='{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}'

json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

mkdir -p "$DATA_DIR"
out="$DATA_DIR/images.json.tmp.$$"
{
  printf '{\n  "version": 1,\n  "mode": "offline",\n  "recordedAt": "%s",\n  "images": {' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  sep=""
  for entry in "${OFFLINE_IMAGES[@]}"; do
    IFS='|' read -r key tag <<<"$entry"
    built=false
    versions=""
    if pm image exists "$tag"; then
      built=true
      # Labels io.sandboxshift.<tool>.version=<v> → {"<tool>": "<v>"}
      while IFS='=' read -r k v; do
        [[ "$k" =~ ^io\.sandboxshift\.([a-z0-9-]+)\.version$ ]] || continue
        versions+="${versions:+, }$(json_string "${BASH_REMATCH[1]}"): $(json_string "$v")"
      done < <(pm image inspect --format "$LABELS_FORMAT" "$tag")
    fi
    printf '%s\n    %s: {"image": %s, "build": %s, "built": %s, "versions": {%s}}' "$sep" \
      "$(json_string "$key")" "$(json_string "$tag")" "$(json_string "bash images/offline/build.sh $key")" "$built" "$versions"
    sep=","
  done
  printf '\n  }\n}\n'
} >"$out"
mv -f "$out" "$DATA_DIR/images.json"
step "recorded the offline image tags in $DATA_DIR/images.json"
