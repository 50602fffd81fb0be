#!/usr/bin/env bash
# Network benchmark, everything inside a private network+mount+PID namespace made here (the
# machine's own addresses, routes, ip_forward and nftables rules are never touched):
#   - the setup cost per container: netns alone vs netns + berth_net::connect/disconnect
#     (bridge, veth pair, address, route, nftables rules, DNS name)
#   - TCP throughput with iperf3: container-to-container over the bridge, host to a container
#     through a published port (DNAT on 127.0.0.1), and host loopback as the reference; with
#     the default MTU (1500) and with a network created with mtu 65520
#   - optional: `berth run --rm busybox true` with the default bridge vs --network none, when
#     BERTH (a berth binary) and BERTH_IMAGE (an image it has pulled, under BERTH_ROOT) are set,
#     and `podman run --rm` with its default bridge vs --network none where podman exists.
# Needs: iperf3, jq, bc, nftables, iproute2, util-linux (unshare, nsenter), hyperfine (optional part).
# Env: N (connect iterations, default 200), SECS (iperf3 seconds, default 5).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200}
SECS=${SECS:-5}

if [ "${1:-}" != "--inside" ]; then
    for t in iperf3 jq bc nft unshare nsenter; do
        command -v "$t" >/dev/null || { echo "bench/net.sh: $t is not installed" >&2; exit 1; }
    done
    (cd "$REPO" && cargo build --release -q -p berth-net --example net-bench)
    export NETBENCH="$REPO/target/release/examples/net-bench"
    exec unshare --net --mount --pid --fork --mount-proc --propagation private "$0" --inside
fi

# ---- inside the private test host ----
mount -t tmpfs bench-run /run
mkdir -p /run/netns
ip link set lo up
WORK=$(mktemp -d /tmp/berth-bench-net.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== per-container network setup ($N iterations, release build)"
"$NETBENCH" connect-cost "$WORK/cost" "$N"

gbps() { jq -r '.end.sum_received.bits_per_second / 1e9'; }
iperf3 -s -D -p 5301 -B 127.0.0.1 --pidfile "$WORK/lo.pid"
sleep 0.3
LO=$(iperf3 -J -c 127.0.0.1 -p 5301 -t "$SECS" | gbps)
kill "$(cat "$WORK/lo.pid")" 2>/dev/null || true

throughput() { # $1: MTU of the network ("" = the default, 1500)
    local tag=${1:-1500}
    read -r IP1 _ < <(MTU=$1 "$NETBENCH" setup "$WORK/tp$tag" bench c1 c2)
    nsenter --net=/run/netns/c1 iperf3 -s -D -p 5201 --pidfile "$WORK/s$tag.pid"
    sleep 0.3
    C2C=$(nsenter --net=/run/netns/c2 iperf3 -J -c "$IP1" -p 5201 -t "$SECS" | gbps)
    PUB=$(iperf3 -J -c 127.0.0.1 -p 5201 -t "$SECS" | gbps)
    printf '%-46s %8.2f Gbit/s (%.2fx loopback)\n' \
        "container -> container, MTU $tag" "$C2C" "$(echo "$C2C / $LO" | bc -l)" \
        "host 127.0.0.1 -> published port, MTU $tag" "$PUB" "$(echo "$PUB / $LO" | bc -l)"
    kill "$(cat "$WORK/s$tag.pid")" 2>/dev/null || true
    "$NETBENCH" teardown "$WORK/tp$tag" bench c1 c2
}

echo
echo "== TCP throughput, iperf3 -t $SECS (target: published port >= 0.8x loopback)"
printf '%-46s %8.2f Gbit/s\n' "host loopback" "$LO"
throughput ""
throughput 65520

if [ -n "${BERTH:-}" ] && [ -n "${BERTH_IMAGE:-}" ] && command -v hyperfine >/dev/null; then
    echo
    echo "== berth run --rm $BERTH_IMAGE true: default bridge vs --network none"
    R=(--root "${BERTH_ROOT:-/var/lib/berth}")
    hyperfine -N -w 3 -r 30 \
        "$BERTH ${R[*]} run --rm --network none $BERTH_IMAGE true" \
        "$BERTH ${R[*]} run --rm $BERTH_IMAGE true"
fi
if command -v podman >/dev/null && command -v hyperfine >/dev/null && [ -n "${PODMAN_IMAGE:-}" ]; then
    echo
    echo "== podman run --rm $PODMAN_IMAGE true: default bridge vs --network none"
    hyperfine -w 3 -r 20 \
        "podman run --rm --network none $PODMAN_IMAGE true" \
        "podman run --rm $PODMAN_IMAGE true"
fi
