#!/usr/bin/env bash
# Network benchmark, everything inside a private network+mount+PID namespace made here (the
# machine's own addresses, routes, ip_forward and nftables rules are never touched):
#   - the setup cost per container: netns alone vs netns + berth_net::connect/disconnect
#     (bridge, veth pair, address, route, nftables rules, DNS name)
#   - TCP throughput with iperf3: container-to-container over the bridge, host to a container
#     through a published port (DNAT on 127.0.0.1), and host loopback as the reference; with
#     the default MTU (1500) and with a network created with mtu 65520
#   - `berth run --rm busybox true` with the default bridge vs --network none, in interleaved
#     pairs (release build,
#     image from a registry started inside the namespace), and `podman run --rm` with its
#     default bridge vs --network none where podman is installed, side by side
# Needs: iperf3, jq, bc, nftables, iproute2, util-linux (unshare, nsenter), umoci,
#        skopeo, docker-registry, curl, busybox-static; podman (optional).
# Env: N (connect iterations, default 200), SECS (iperf3 seconds, default 5), TP_RUNS (rounds
#      of each throughput measurement, default 5; medians are reported), PARTS (any of
#      setup,throughput,run; default all), RUNS / PRUNS (pairs of berth / podman runs,
#      default 50 / 20), BERTH (a berth binary; default: build target/release/berth).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200}
SECS=${SECS:-5}
TP_RUNS=${TP_RUNS:-5}
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

# One iperf3 run: Gbit/s received. The first second (slow start) is left out, the client and
# the server are pinned to CPUs of their own (the same ones for every path, so that the paths
# compare and the scheduler's moves do not add noise).
CPUS=$(nproc)
CLI_CPU=0 SRV_CPU=$((CPUS > 1 ? 1 : 0))
iperf() { # $1: netns ("" = the test host), $2: address, $3: port
    local pre=()
    [ -n "$1" ] && pre=(nsenter --net="/run/netns/$1")
    "${pre[@]}" iperf3 -J -A "$CLI_CPU" -O 1 -c "$2" -p "$3" -t "$SECS" |
        jq -r '.end.sum_received.bits_per_second / 1e9'
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

throughput() { # $1: MTU of the network ("" = the default, 1500)
    local tag=${1:-1500} r lo pub c2c
    read -r IP1 _ < <(MTU=$1 "$NETBENCH" setup "$WORK/tp$tag" bench c1 c2)
    iperf3 -s -D -A "$SRV_CPU" -p 5301 -B 127.0.0.1 --pidfile "$WORK/lo$tag.pid"
    nsenter --net=/run/netns/c1 iperf3 -s -D -A "$SRV_CPU" -p 5201 --pidfile "$WORK/s$tag.pid"
    sleep 0.3
    : >"$WORK/lo$tag" && : >"$WORK/pub$tag" && : >"$WORK/c2c$tag" && : >"$WORK/ratio$tag"
    # Interleaved rounds: load on the machine that comes and goes hits every path alike.
    for ((r = 0; r < TP_RUNS; r++)); do
        lo=$(iperf "" 127.0.0.1 5301)
        pub=$(iperf "" 127.0.0.1 5201)
        c2c=$(iperf c2 "$IP1" 5201)
        echo "$lo" >>"$WORK/lo$tag"
        echo "$pub" >>"$WORK/pub$tag"
        echo "$c2c" >>"$WORK/c2c$tag"
        echo "$pub / $lo" | bc -l >>"$WORK/ratio$tag"
    done
    local LO PUB C2C RATIO
    LO=$(median <"$WORK/lo$tag") PUB=$(median <"$WORK/pub$tag")
    C2C=$(median <"$WORK/c2c$tag") RATIO=$(median <"$WORK/ratio$tag")
    printf '%-46s %8.2f Gbit/s\n' "host loopback (reference)" "$LO"
    printf '%-46s %8.2f Gbit/s (%.2fx loopback)\n' \
        "container -> container, MTU $tag" "$C2C" "$(echo "$C2C / $LO" | bc -l)" \
        "host 127.0.0.1 -> published port, MTU $tag" "$PUB" "$RATIO"
    printf '  (medians of %d interleaved rounds; published/loopback per round: %s)\n' \
        "$TP_RUNS" "$(sort -g "$WORK/ratio$tag" | xargs printf '%.2f ' )"
    kill "$(cat "$WORK/s$tag.pid")" "$(cat "$WORK/lo$tag.pid")" 2>/dev/null || true
    "$NETBENCH" teardown "$WORK/tp$tag" bench c1 c2
}

if [[ ",$PARTS," == *,throughput,* ]]; then
    echo
    echo "== TCP throughput, iperf3 -t $SECS -O 1 (target: published port >= 0.8x loopback)"
    throughput ""
    throughput 65520
fi

[[ ",$PARTS," == *,run,* ]] || exit 0

# ---- berth run --rm busybox true: default bridge vs --network none, and podman the same ----
echo
echo "== container start: bridge vs --network none ($RUNS interleaved pairs, medians)"
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
# Interleaved pairs (none, bridge, none, bridge, ...): load on the machine that comes and goes
# hits both alike, and the cost is the median of the per-pair differences.
ms_now() { date +%s%N; }
paired() { # $1: tag, $2: runs, $3: command without network, $4: command with the bridge
    local i t0 t1 t2
    : >"$WORK/$1.none" && : >"$WORK/$1.bridge" && : >"$WORK/$1.diff"
    for i in 1 2 3; do $3 >/dev/null && $4 >/dev/null; done # warm-up
    for ((i = 0; i < $2; i++)); do
        t0=$(ms_now)
        $3 >/dev/null
        t1=$(ms_now)
        $4 >/dev/null
        t2=$(ms_now)
        echo "($t1 - $t0) / 1000000" | bc -l >>"$WORK/$1.none"
        echo "($t2 - $t1) / 1000000" | bc -l >>"$WORK/$1.bridge"
        echo "(($t2 - $t1) - ($t1 - $t0)) / 1000000" | bc -l >>"$WORK/$1.diff"
    done
}
paired berth "$RUNS" "$BERTH --root $B run --rm --network none $REF true" \
    "$BERTH --root $B run --rm $REF true"
BN=$(median <"$WORK/berth.none") BB=$(median <"$WORK/berth.bridge")
BD=$(median <"$WORK/berth.diff")
if command -v podman >/dev/null; then
    P="$WORK/podman"
    PODMAN="podman --root $P/root --runroot $P/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
    # podman's default rlimits exceed this host's hard limits (root lacks CAP_SYS_RESOURCE);
    # crun refuses the hybrid cgroup2 mount, hidden here (this is a private mount namespace).
    PRUN="run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    [ -d /sys/fs/cgroup/unified ] && mount -t tmpfs none /sys/fs/cgroup/unified
    $PODMAN pull -q --tls-verify=false "docker://$REF" >/dev/null
    paired podman "$PRUNS" "$PODMAN $PRUN --network none $REF true" "$PODMAN $PRUN $REF true"
    PN=$(median <"$WORK/podman.none") PB=$(median <"$WORK/podman.bridge")
    PD=$(median <"$WORK/podman.diff")
    $PODMAN rm -af >/dev/null 2>&1 || true
    $PODMAN network rm -f podman >/dev/null 2>&1 || true
fi
echo
printf '%-8s %12s %12s %14s %14s\n' "" "--network none" "bridge" "bridge costs" "(per pair)"
printf '%-8s %10.1fms %10.1fms %12.1fms %12.1fms\n' berth "$BN" "$BB" "$(echo "$BB - $BN" | bc -l)" "$BD"
[ -n "${PN:-}" ] && printf '%-8s %10.1fms %10.1fms %12.1fms %12.1fms\n' podman "$PN" "$PB" \
    "$(echo "$PB - $PN" | bc -l)" "$PD"
printf '(medians of %d / %d interleaved pairs; "per pair": the median of the pairs'"'"' differences)\n' \
    "$RUNS" "$PRUNS"
printf 'target: the bridge costs berth < 10 ms per container: %s\n' \
    "$(echo "$BB - $BN < 10" | bc -l | sed 's/1/met/;s/0/missed/')"
