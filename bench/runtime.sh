#!/usr/bin/env bash
# Side-by-side runtime benchmark on one busybox bundle (args /bin/true, no terminal):
# berth-runtime vs runc vs crun, each as `run`, as create+start+delete, 100 runs in sequence,
# and each one's peak RSS. Everything runs in one private mount namespace where the hybrid
# cgroup2 mount (/sys/fs/cgroup/unified) is unmounted, because crun refuses
# hybrid hosts; all three runtimes see the same cgroup layout.
#
# Usage: bench/runtime.sh [RUNS]   (needs root, hyperfine, jq, runc, crun, busybox-static)
set -euo pipefail
RUNS=${1:-50}
cd "$(dirname "$0")/.."
cargo build --release -q -p berth --bin berth-runtime
BERTH=$PWD/target/release/berth-runtime
WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
export BERTH WORK RUNS
cleanup() {
    for rt in berth runc crun; do
        for id in r c s; do
            case $rt in
                berth) "$BERTH" --root "$WORK/root-berth" delete --force "$id" 2>/dev/null || true ;;
                *) "$rt" --root "$WORK/root-$rt" delete --force "$id" 2>/dev/null || true ;;
            esac
        done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/proc" "$WORK/bundle/rootfs/sys" \
    "$WORK/bundle/rootfs/dev" "$WORK/bundle/rootfs/tmp"
cp /bin/busybox "$WORK/bundle/rootfs/bin/busybox"
ln -s busybox "$WORK/bundle/rootfs/bin/true"
ln -s busybox "$WORK/bundle/rootfs/bin/sh"
runc spec --bundle "$WORK/bundle"
jq '.process.terminal=false | .process.args=["/bin/true"]' "$WORK/bundle/config.json" \
    > "$WORK/config.json" && mv "$WORK/config.json" "$WORK/bundle/config.json"

unshare -m --propagation private bash -euo pipefail -c '
umount /sys/fs/cgroup/unified
B=$WORK/bundle
cmd() { # runtime -> its command prefix
    case $1 in
        berth) echo "$BERTH --root $WORK/root-berth" ;;
        *) echo "$1 --root $WORK/root-$1" ;;
    esac
}
BE=$(cmd berth); RC=$(cmd runc); CR=$(cmd crun)
echo "== run (/bin/true)"
hyperfine -N -w 3 -r "$RUNS" --export-json "$WORK/run.json" \
    -n berth "$BE run -b $B r" -n runc "$RC run -b $B r" -n crun "$CR run -b $B r"
echo "== create + start + delete"
csd() { echo "$1 create -b $B c && $1 start c && $1 delete --force c"; }
hyperfine -w 3 -r "$RUNS" --export-json "$WORK/csd.json" \
    -n berth "$(csd "$BE")" -n runc "$(csd "$RC")" -n crun "$(csd "$CR")"
echo "== 100 containers in sequence"
seq100() { echo "for i in \$(seq 100); do $1 run -b $B s; done"; }
hyperfine -w 1 -r 3 --export-json "$WORK/seq.json" \
    -n berth "$(seq100 "$BE")" -n runc "$(seq100 "$RC")" -n crun "$(seq100 "$CR")"
echo "== peak RSS of run (max of 10, /usr/bin/time -v)"
for rt in berth runc crun; do
    c=$(cmd $rt)
    max=0
    for i in $(seq 10); do
        kb=$(/usr/bin/time -v $c run -b $B r 2>&1 >/dev/null | awk "/Maximum resident/ {print \$6}")
        [ "$kb" -gt "$max" ] && max=$kb
    done
    echo "$rt $max" >> "$WORK/rss.txt"
    printf "%-6s %6.2f MiB\n" $rt "$(echo "$max/1024" | bc -l)"
done
'
echo "== summary (berth / other, lower is better for berth)"
for f in run csd seq; do
    jq -r --arg f "$f" '
        (.results | map({(.command): .mean}) | add) as $m
        | "\($f): berth \($m.berth*1000|.*100|round/100) ms, runc \($m.runc*1000|.*100|round/100) ms, crun \($m.crun*1000|.*100|round/100) ms; berth/crun \($m.berth/$m.crun|.*100|round/100)x, berth/runc \($m.berth/$m.runc|.*100|round/100)x"' \
        "$WORK/$f.json"
done
awk '{rss[$1]=$2} END {printf "peak RSS: berth %.2f MiB, runc %.2f MiB, crun %.2f MiB; berth/crun %.2fx\n", rss["berth"]/1024, rss["runc"]/1024, rss["crun"]/1024, rss["berth"]/rss["crun"]}' "$WORK/rss.txt"
