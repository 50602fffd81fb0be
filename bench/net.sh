#!/usr/bin/env bash
# Network benchmark, everything inside a private network+mount+PID namespace made here (the
# machine's own addresses, routes, ip_forward and nftables rules are never touched):
#   - the setup cost per container: netns alone vs netns + berth_net::connect/disconnect
#     (bridge, veth pair, address, route, nftables rules, DNS name)
#   - TCP throughput with iperf3: container-to-container over the bridge, host to a container
#     through a published port (DNAT on 127.0.0.1), and host loopback as the reference; on a
#     network with berth's default, host-local MTU and on one created with mtu=1500 (Docker's
#     exact layout), side by side
#   - `berth run --rm busybox true` with the default bridge vs --network none, and vs a user
#     network (whose DNS responder starts and stops with its only container), in interleaved
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

# Two networks side by side, measured in the same interleaved rounds: "hl", made without an MTU
# (berth's default: the host-local MTU, 65520 on the bridge and veths, the uplink's MTU on the
# containers' default route), and "d", made with mtu=1500 (Docker's exact layout). Each has a
# server container publishing a port (5201 / 5202 on the test host) and a client container.
throughput() {
    local r n lo v
    local -A port=([hl]=5201 [d]=5202) ip
    read -r "ip[hl]" _ < <(PORT=5201 "$NETBENCH" setup "$WORK/tp" hl hl1 hl2)
    read -r "ip[d]" _ < <(MTU=1500 PORT=5202 "$NETBENCH" setup "$WORK/tp" d d1 d2)
    for n in hl d; do
        printf '  %-4s eth0 mtu %s, default route: %s\n' "$n" \
            "$(ip -n "${n}1" -o link show eth0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)" \
            "$(ip -n "${n}1" route show default | sed 's/ *$//')"
    done
    iperf3 -s -D -A "$SRV_CPU" -p 5301 -B 127.0.0.1 --pidfile "$WORK/lo.pid"
    nsenter --net=/run/netns/hl1 iperf3 -s -D -A "$SRV_CPU" -p 5201 --pidfile "$WORK/hl.pid"
    nsenter --net=/run/netns/d1 iperf3 -s -D -A "$SRV_CPU" -p 5201 --pidfile "$WORK/d.pid"
    sleep 0.3
    for f in lo hl.pub hl.c2c d.pub d.c2c hl.pubr hl.c2cr d.pubr d.c2cr; do : >"$WORK/$f"; done
    # Interleaved rounds: load on the machine that comes and goes hits every path alike; each
    # ratio is against the loopback run of its own round.
    for ((r = 0; r < TP_RUNS; r++)); do
        lo=$(iperf "" 127.0.0.1 5301)
        echo "$lo" >>"$WORK/lo"
        for n in hl d; do
            v=$(iperf "" 127.0.0.1 "${port[$n]}")
            echo "$v" >>"$WORK/$n.pub"
            echo "$v / $lo" | bc -l >>"$WORK/$n.pubr"
            v=$(iperf "${n}2" "${ip[$n]}" 5201)
            echo "$v" >>"$WORK/$n.c2c"
            echo "$v / $lo" | bc -l >>"$WORK/$n.c2cr"
        done
    done
    local row='%-36s %11.2f Gbit/s %5.2fx   %11.2f Gbit/s %5.2fx\n'
    printf '%-36s %-26s %s\n' "" "default (host-local MTU)" "-o mtu=1500 (Docker's)"
    printf '%-36s %11.2f Gbit/s\n' "host loopback (reference)" "$(median <"$WORK/lo")"
    # shellcheck disable=SC2059
    printf "$row" "host 127.0.0.1 -> published port" \
        "$(median <"$WORK/hl.pub")" "$(median <"$WORK/hl.pubr")" \
        "$(median <"$WORK/d.pub")" "$(median <"$WORK/d.pubr")" \
        "container -> container" \
        "$(median <"$WORK/hl.c2c")" "$(median <"$WORK/hl.c2cr")" \
        "$(median <"$WORK/d.c2c")" "$(median <"$WORK/d.c2cr")"
    printf '  (medians of %d interleaved rounds, ratios against loopback per round;\n' "$TP_RUNS"
    printf '   published/loopback per round: default %s; mtu=1500 %s)\n' \
        "$(sort -g "$WORK/hl.pubr" | xargs printf '%.2f ' | sed 's/ $//')" \
        "$(sort -g "$WORK/d.pubr" | xargs printf '%.2f ' | sed 's/ $//')"
    printf 'target: published port >= 0.8x loopback (default network): %s\n' \
        "$(echo "$(median <"$WORK/hl.pubr") >= 0.8" | bc -l | sed 's/1/met/;s/0/missed/')"
    kill "$(cat "$WORK/hl.pid")" "$(cat "$WORK/d.pid")" "$(cat "$WORK/lo.pid")" 2>/dev/null || true
    "$NETBENCH" teardown "$WORK/tp" hl hl1 hl2
    "$NETBENCH" teardown "$WORK/tp" d d1 d2
}

if [[ ",$PARTS," == *,throughput,* ]]; then
    echo
    echo "== TCP throughput, iperf3 -t $SECS -O 1 (target: published port >= 0.8x loopback)"
    throughput
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
# A user network's last container: its DNS responder starts and stops with each run.
"$BERTH" --root "$B" network create benchnet >/dev/null
paired user "$RUNS" "$BERTH --root $B run --rm $REF true" \
    "$BERTH --root $B run --rm --network benchnet $REF true"
UB=$(median <"$WORK/user.none") UN=$(median <"$WORK/user.bridge")
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
printf '%-8s %10.1fms on bridge, %.1fms on a user network (run --rm of its only container)\n' \
    berth "$UB" "$UN"
printf '(medians of %d / %d interleaved pairs; "per pair": the median of the pairs'"'"' differences)\n' \
    "$RUNS" "$PRUNS"
printf 'target: the bridge costs berth < 10 ms per container: %s\n' \
    "$(echo "$BB - $BN < 10" | bc -l | sed 's/1/met/;s/0/missed/')"
