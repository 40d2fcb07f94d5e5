#!/usr/bin/env bash
# `npm start`: prepare the machine (scripts/setup.sh), then run the server in the foreground.
# Arguments are passed to the server. The server starts its own Podman API service when no socket
# is configured.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

bash "$SANDBOXSHIFT_ROOT/scripts/setup.sh"

cd "$SANDBOXSHIFT_ROOT"
[[ -f dist/src/server.js ]] || die "dist/src/server.js not found: the server is not built (is src/server.ts there? run: npm run build)"
step "starting the server: node dist/src/server.js $*"
exec node dist/src/server.js "$@"
