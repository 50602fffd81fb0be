#!/usr/bin/env bash
# Runs every berth test: formatting, lints, unit and integration tests (as root:
# the integration tests create namespaces, mounts, cgroups and a local registry).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "berth's tests need root (namespaces, mounts, cgroups): run with sudo" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
