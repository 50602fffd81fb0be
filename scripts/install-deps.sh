#!/usr/bin/env bash
# Installs what berth's build, demo and tests need on Debian 12 (run as root).
# Idempotent: packages already present are left alone.
#   --bench  also installs what bench/ compares berth with (podman, iperf3, debootstrap).
set -euo pipefail

packages=(
  # build
  build-essential pkg-config libseccomp-dev
  # a real registry and independent image tools the tests compare against
  docker-registry skopeo umoci apache2-utils openssl curl
  # the busybox the test images and bundles are made from
  busybox-static
  # anchors for the benchmarks and the runtime's peers
  runc crun hyperfine time
  # inspection tools used by tests
  iproute2 nftables jq attr util-linux procps
)
if [ "${1:-}" = --bench ]; then
  packages+=(podman iperf3 debootstrap bc)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps Debian's docker-registry service from starting on install:
  # the tests and the quick start run their own registries.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "installing the Rust toolchain with rustup" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  fi
fi
