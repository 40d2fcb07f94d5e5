#!/usr/bin/env bash
# Build sandboxshift/runtime-python:3.11 offline (kept for existing callers; see build.sh).
# Usage: images/offline/build-python.sh [--force]
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/build.sh" python "$@"
