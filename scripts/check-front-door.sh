#!/usr/bin/env bash
# The front door as a newcomer meets it: a clean clone of HEAD installs with the frozen lockfile,
# builds, and runs a CLI with clean stdout, under the newest pnpm 10 (`npm install -g pnpm@10`)
# and the newest pnpm (`npm install -g pnpm`). Each pnpm is installed into a scratch prefix, so the
# machine's own pnpm is left alone. Bounded: a few minutes at most with a warm package store.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for spec in pnpm@10 pnpm@latest; do
  prefix="$scratch/${spec//[@.]/-}"
  npm install --silent --prefix "$prefix" "$spec" >/dev/null
  pnpm_bin="$prefix/node_modules/.bin/pnpm"
  version="$("$pnpm_bin" --version)"
  clone="$prefix/conclave"
  git clone --quiet "$repo" "$clone"
  echo "front door: $spec ($version): install, build, CLI output"
  (
    cd "$clone"
    ONNXRUNTIME_NODE_INSTALL=skip timeout 600 "$pnpm_bin" install --frozen-lockfile >"$prefix/install.log" 2>&1 ||
      { cat "$prefix/install.log"; echo "front door: $spec: install failed"; exit 1; }
    if grep -Eiq 'WARN|Ignored build scripts' "$prefix/install.log"; then
      cat "$prefix/install.log"; echo "front door: $spec: install printed warnings"; exit 1
    fi
    timeout 600 "$pnpm_bin" build >"$prefix/build.log" 2>&1 || { cat "$prefix/build.log"; exit 1; }
    # What the README runs: stdout must be the command's own output, nothing of pnpm's.
    first_line="$("$pnpm_bin" orchestrator --help | head -1)"
    [ "$first_line" = "Usage: orchestrator [options] [command]" ] ||
      { echo "front door: $spec: 'pnpm orchestrator --help' stdout starts with: $first_line"; exit 1; }
  )
done
echo "front door: ok"
