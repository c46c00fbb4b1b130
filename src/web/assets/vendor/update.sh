#!/usr/bin/env bash
# Re-fetches the dashboard's vendored libraries from the npm registry at the
# pinned versions below and copies their ES module builds here, so the files
# in this folder are reproducible: `./update.sh` rewrites them, and
# `./update.sh --check` fails when they differ from what the registry gives.
#
# The only edits: preact/hooks imports "preact" by its bare name, which a
# browser cannot resolve without an import map (and the dashboard's CSP
# forbids the inline <script> an import map needs), so it is pointed at
# ./preact.mjs; and the sourceMappingURL comments are dropped (the maps are
# not shipped).
set -euo pipefail

PREACT=11.2.0
HTM=3.1.1

here="$(cd "$(dirname "$0")" && pwd)"
check=0
[ "${1:-}" = "--check" ] && check=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null
mkdir preact htm out
tar xzf "preact-$PREACT.tgz" -C preact
tar xzf "htm-$HTM.tgz" -C htm

strip_map() { sed -e '/^\/\/# sourceMappingURL=/d' -e 's|//# sourceMappingURL=[^ ]*$||'; }
strip_map <preact/package/dist/preact.mjs >out/preact.mjs
strip_map <preact/package/hooks/dist/hooks.mjs | sed -e 's|from"preact"|from"./preact.mjs"|g' -e "s|from 'preact'|from './preact.mjs'|g" >out/hooks.mjs
strip_map <htm/package/dist/htm.module.js >out/htm.mjs
cp preact/package/LICENSE out/LICENSE-preact
cp htm/package/LICENSE out/LICENSE-htm
grep -q 'from"preact"' out/hooks.mjs && { echo "update.sh: hooks.mjs still imports bare \"preact\"" >&2; exit 1; }

status=0
for f in preact.mjs hooks.mjs htm.mjs LICENSE-preact LICENSE-htm; do
  if [ "$check" = 1 ]; then
    if ! cmp -s "out/$f" "$here/$f"; then
      echo "differs from preact@$PREACT / htm@$HTM: $f" >&2
      status=1
    fi
  else
    cp "out/$f" "$here/$f"
  fi
done
if [ "$check" = 1 ] && [ "$status" = 0 ]; then
  echo "vendor: preact@$PREACT and htm@$HTM match the registry"
elif [ "$check" = 0 ]; then
  echo "vendor: copied preact@$PREACT (preact.mjs, hooks.mjs) and htm@$HTM (htm.mjs) into $here"
fi
exit $status
