#!/usr/bin/env bash
# The live migration demo: two local SecantusDB test servers, a sample dataset, a write load,
# mongomirror in between, and a final check that source and destination match.
# Needs only Rust, Python 3 and pip. Usage: bash tests/demo/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/secantus-venv"
marker="$venv/.mongomirror-it-complete"
requirement="SecantusDB==0.7.0b3"

if [ ! -f "$marker" ]; then
  echo "== provisioning the test server ($requirement) into $venv"
  mkdir -p "$target"
  tmp="$(mktemp -d "$target/secantus-venv.tmp.XXXXXX")"
  python3 -m venv "$tmp"
  "$tmp/bin/python3" -m pip install --quiet --disable-pip-version-check "$requirement"
  echo "$requirement" > "$tmp/.mongomirror-it-complete"
  mv -T "$tmp" "$venv" 2>/dev/null || rm -rf "$tmp"   # another process may have won the race
fi

echo "== building mongomirror (release)"
cargo build --release --locked --quiet
# Servers start through the harness launcher, which fixes the test server's tailable oplog cursor.
exec "$venv/bin/python3" "$root/tests/demo/demo.py" "$target/release/mongomirror" "$root/tests/secantus/launch.py"
