#!/usr/bin/env bash
# Puts DuckDB's official prebuilt shared library (v1.5.6, linux-x64) in .duckdb/lib, where
# .cargo/config.toml points the `duckdb` crate (DUCKDB_LIB_DIR) and the loader (LD_LIBRARY_PATH).
# Building DuckDB from source with the crate's `bundled` feature takes over half an hour on two cores;
# the prebuilt library ships inside the npm package @duckdb/node-bindings-linux-x64.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.duckdb/lib"
version="1.5.6-r.1"
if [ -f "$dest/libduckdb.so" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg="@duckdb/node-bindings-linux-x64" ;;
  Linux-aarch64) pkg="@duckdb/node-bindings-linux-arm64" ;;
  *) echo "fetch-duckdb: no prebuilt DuckDB for $(uname -s)-$(uname -m); build with the duckdb crate's 'bundled' feature" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "fetch-duckdb: npm is needed to fetch DuckDB's prebuilt library (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null )
tar xzf "$tmp"/*.tgz -C "$tmp"
mkdir -p "$dest"
cp "$tmp/package/libduckdb.so" "$dest/libduckdb.so"
cp "$tmp/package/LICENSE" "$dest/LICENSE" 2>/dev/null || true
echo "$version" > "$dest/VERSION"
echo "fetch-duckdb: DuckDB $version library in $dest" >&2
