#!/usr/bin/env bash
# Network benchmark, everything inside a private network+mount+PID namespace made here (the
# machine's own addresses, routes, ip_forward and nftables rules are never touched):
#   - the setup cost per container: netns alone vs netns + berth_net::connect/disconnect
#     (bridge, veth pair, address, route, nftables rules, DNS name)
#   - TCP throughput with iperf3: container-to-container over the bridge, host to a container
#     through a published port (DNAT on 127.0.0.1), and host loopback as the reference; with
#     the default MTU (1500) and with a network created with mtu 65520
#   - `berth run --rm busybox true` with the default bridge vs --network none (release build,
#     image from a registry started inside the namespace), and `podman run --rm` with its
#     default bridge vs --network none where podman is installed, side by side
# Needs: iperf3, jq, bc, nftables, iproute2, util-linux (unshare, nsenter), hyperfine, umoci,
#        skopeo, docker-registry, curl, busybox-static; podman (optional).
# Env: N (connect iterations, default 200), SECS (iperf3 seconds, default 5), PARTS (any of
#      setup,throughput,run; default all), RUNS / PRUNS (hyperfine runs of berth / podman,
#      default 50 / 20), BERTH (a berth binary; default: build target/release/berth).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200}
SECS=${SECS:-5}
PARTS=${PARTS:-setup,throughput,run}
RUNS=${RUNS:-50}
PRUNS=${PRUNS:-20}

if [ "${1:-}" != "--inside" ]; then
    for t in iperf3 jq bc nft unshare nsenter; do
        command -v "$t" >/dev/null || { echo "bench/net.sh: $t is not installed" >&2; exit 1; }
    done
    (cd "$REPO" && cargo build --release -q -p berth-net --example net-bench)
    export NETBENCH="$REPO/target/release/examples/net-bench"
    if [[ ",$PARTS," == *,run,* ]] && [ -z "${BERTH:-}" ]; then
        (cd "$REPO" && cargo build --release -q -p berth)
        export BERTH="$REPO/target/release/berth"
    fi
    # Made (and removed) out here: mounts made inside (podman's) keep it busy until the
    # namespace is gone.
    WORK=$(mktemp -d /tmp/berth-bench-net.XXXXXX)
    export WORK
    rc=0
    unshare --net --mount --pid --fork --mount-proc --propagation private "$0" --inside || rc=$?
    rm -rf "$WORK"
    exit $rc
fi

# ---- inside the private test host ----
mount -t tmpfs bench-run /run
mkdir -p /run/netns
ip link set lo up

if [[ ",$PARTS," == *,setup,* ]]; then
    echo "== per-container network setup ($N iterations, release build)"
    "$NETBENCH" connect-cost "$WORK/cost" "$N"
fi

gbps() { jq -r '.end.sum_received.bits_per_second / 1e9'; }
if [[ ",$PARTS," == *,throughput,* ]]; then
    iperf3 -s -D -p 5301 -B 127.0.0.1 --pidfile "$WORK/lo.pid"
    sleep 0.3
    LO=$(iperf3 -J -c 127.0.0.1 -p 5301 -t "$SECS" | gbps)
    kill "$(cat "$WORK/lo.pid")" 2>/dev/null || true
fi

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

if [[ ",$PARTS," == *,throughput,* ]]; then
    echo
    echo "== TCP throughput, iperf3 -t $SECS (target: published port >= 0.8x loopback)"
    printf '%-46s %8.2f Gbit/s\n' "host loopback" "$LO"
    throughput ""
    throughput 65520
fi

[[ ",$PARTS," == *,run,* ]] || exit 0

# ---- berth run --rm busybox true: default bridge vs --network none, and podman the same ----
echo
echo "== container start: bridge vs --network none (hyperfine, $RUNS runs each, medians)"
. "$REPO/bench/registry.sh"
OCI="$WORK/oci" BUN="$WORK/bundle"
umoci init --layout "$OCI"
umoci new --image "$OCI:latest"
umoci unpack --image "$OCI:latest" "$BUN" >/dev/null
mkdir -p "$BUN/rootfs/bin" "$BUN/rootfs/etc"
cp /bin/busybox "$BUN/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$BUN/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$BUN/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$BUN/rootfs/etc/group"
umoci repack --image "$OCI:latest" "$BUN"
umoci config --image "$OCI:latest" --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
start_registry "$WORK"
trap 'kill $REG_PID 2>/dev/null' EXIT
REF="127.0.0.1:$PORT/busybox:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:latest" "docker://$REF"
B="$WORK/berth"
"$BERTH" --root "$B" pull -q "$REF" >/dev/null
hyperfine -N -w 3 -r "$RUNS" --style basic --export-json "$WORK/berth.json" \
    -n "berth --network none" "$BERTH --root $B run --rm --network none $REF true" \
    -n "berth bridge" "$BERTH --root $B run --rm $REF true"
res() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median * 1000' "$1"; }
BN=$(res "$WORK/berth.json" "berth --network none") BB=$(res "$WORK/berth.json" "berth bridge")
if command -v podman >/dev/null; then
    P="$WORK/podman"
    PODMAN="podman --root $P/root --runroot $P/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
    # podman's default rlimits exceed this host's hard limits (root lacks CAP_SYS_RESOURCE);
    # crun refuses the hybrid cgroup2 mount, hidden here (this is a private mount namespace).
    PRUN="run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    [ -d /sys/fs/cgroup/unified ] && mount -t tmpfs none /sys/fs/cgroup/unified
    $PODMAN pull -q --tls-verify=false "docker://$REF" >/dev/null
    hyperfine -N -w 3 -r "$PRUNS" --style basic --export-json "$WORK/podman.json" \
        -n "podman --network none" "$PODMAN $PRUN --network none $REF true" \
        -n "podman bridge" "$PODMAN $PRUN $REF true"
    PN=$(res "$WORK/podman.json" "podman --network none") PB=$(res "$WORK/podman.json" "podman bridge")
    $PODMAN rm -af >/dev/null 2>&1 || true
    $PODMAN network rm -f podman >/dev/null 2>&1 || true
fi
echo
printf '%-8s %12s %12s %14s\n' "" "--network none" "bridge" "bridge costs"
printf '%-8s %10.1fms %10.1fms %12.1fms\n' berth "$BN" "$BB" "$(echo "$BB - $BN" | bc -l)"
[ -n "${PN:-}" ] && printf '%-8s %10.1fms %10.1fms %12.1fms\n' podman "$PN" "$PB" "$(echo "$PB - $PN" | bc -l)"
printf 'target: the bridge costs berth < 10 ms per container: %s\n' \
    "$(echo "$BB - $BN < 10" | bc -l | sed 's/1/met/;s/0/missed/')"
