#!/usr/bin/env bash
# berth's main job end to end on a fresh Debian 12 machine (as root):
# install what it needs, build, start a local registry seeded with a busybox
# image, then pull it and run a container from it. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --workspace --bins
bin=$PWD/target/release

work=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
port=${BERTH_QUICKSTART_PORT:-5000}
registry_pid=
cleanup() {
  local rc=$?
  set +e
  "$bin/berth" --root "$work/root" image unmount "$image" >/dev/null 2>&1
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
image=127.0.0.1:$port/busybox:latest

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "== a local registry on 127.0.0.1:$port, seeded with busybox built from busybox-static"
"$bin/berth-fixture" registry --dir "$work/registry" --port "$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
"$bin/berth-fixture" push-busybox "$image"

export BERTH_ROOT=$work/root
step "$bin/berth" pull "$image"
step "$bin/berth" images
mnt=$("$bin/berth" image mount "$image")
step ls "$mnt"
step "$bin/berth" image unmount "$image"
# --network none keeps the demo from adding a bridge and NAT rules to this host; drop it to
# get berth's default bridge network, as with Docker.
step "$bin/berth" run --rm --network none "$image" sh -c 'echo "hello from $(hostname)"; uname -a; id; ps'
