#!/bin/sh
# Entrypoint of the Conclave image: the first argument selects the CLI.
#   conclave orchestrator start …   conclave node-agent start …   conclave model-server start …
# Anything else is run as given (`docker run --rm -it conclave sh`).
set -eu
if [ "$#" -eq 0 ]; then
  echo "usage: <orchestrator|node-agent|model-server> <command> [flags…]" >&2
  exit 2
fi
cli="$1"
case "$cli" in
  orchestrator|node-agent|model-server)
    shift
    # exec: node becomes the container's main process and gets SIGTERM itself
    # (each CLI closes cleanly on SIGINT/SIGTERM; run the container with --init / `init: true`
    # so that a PID 1 reaps any child it does not own).
    exec node "/app/packages/$cli/dist/main.js" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
