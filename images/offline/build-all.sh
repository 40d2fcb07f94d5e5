#!/usr/bin/env bash
# Build every offline runtime image (no container registry needed).
# Usage: images/offline/build-all.sh [--force]
# Today: sandboxshift/runtime-python:3.11. The node and multi images join here in a later issue.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/lib.sh
source "$here/../../scripts/lib.sh"

step "building offline runtime images"
bash "$here/build-python.sh" "$@"
