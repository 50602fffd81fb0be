#!/usr/bin/env bash
# Container start benchmark, side by side in one run (image already pulled):
#   berth run --rm --network none busybox true   (release build; end to end:
#                                                 overlay, cgroup, namespaces, monitor)
#   podman run --rm --network none busybox true  (private mount+net namespace,
#                                                 own --root/--runroot, same registry)
#   runc run / crun run of an unpacked busybox bundle (/bin/true, no terminal)
# Also: the resident memory of an idle detached container's monitor (and of
# podman's conmon for the same), and the time to start 50 detached containers
# and to remove them. Prints medians and ratios.
# Each tool keeps its transient state (berth's and podman's --runroot, runc's and
# crun's --root) on one tmpfs, as in /run on a standard host; images, containers'
# records and overlay dirs stay on disk.
#
# Needs: docker-registry, skopeo, podman, runc, crun, hyperfine, jq, busybox-static.
# Env: RUNS (default 30), BERTH (a berth binary; default: build target/release/berth),
#      BERTH_RUNTIME (the OCI runtime berth drives; default berth's own).
set -euo pipefail

RUNS=${RUNS:-30}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /var/tmp/berth-bench-run.XXXXXX)
REG_PID=

cleanup() {
    set +e
    if [ -n "${BERTH:-}" ] && [ -d "$WORK/berth" ]; then
        b=("$BERTH" --root "$WORK/berth" --runroot "$WORK/run/berth")
        ids=$("${b[@]}" ps -aq 2>/dev/null)
        [ -n "$ids" ] && "${b[@]}" rm -f $ids >/dev/null 2>&1
    fi
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
    grep -o " $WORK[^ ]*" /proc/self/mountinfo 2>/dev/null | awk '{print $1}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "bench/run.sh: $1 is not installed ($2)" >&2; exit 1; }; }
need docker-registry "apt-get install docker-registry"
need skopeo "apt-get install skopeo"
need podman "apt-get install podman"
need runc "apt-get install runc"
need crun "apt-get install crun"
need hyperfine "apt-get install hyperfine"
need jq "apt-get install jq"
[ -x /bin/busybox ] || { echo "bench/run.sh: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

if [ -z "${BERTH:-}" ]; then
    (cd "$REPO" && cargo build --release -p berth --quiet)
    BERTH="$REPO/target/release/berth"
fi
export BERTH_RUNTIME=${BERTH_RUNTIME:-}
echo "berth drives the OCI runtime: ${BERTH_RUNTIME:-berth runtime (built in)}"

# --- a busybox image in an OCI layout ----------------------------------------------
ROOTFS="$WORK/bundle/rootfs"
mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$ROOTFS/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"
chmod 1777 "$ROOTFS/tmp"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
OCI="$WORK/oci"
mkdir -p "$OCI/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
tar -C "$ROOTFS" --numeric-owner -cf "$WORK/layer.tar" .
diff_hex=$(sha "$WORK/layer.tar")
gzip -6 -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
layer_hex=$(sha "$WORK/layer.tar.gz")
cp "$WORK/layer.tar.gz" "$OCI/blobs/sha256/$layer_hex"
arch=$(case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"created":"2024-01-01T00:00:00Z"}' \
    "$arch" "$diff_hex" >"$WORK/config.json"
config_hex=$(sha "$WORK/config.json")
cp "$WORK/config.json" "$OCI/blobs/sha256/$config_hex"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_hex" "$(size "$WORK/config.json")" "$layer_hex" "$(size "$WORK/layer.tar.gz")" >"$WORK/manifest.json"
manifest_hex=$(sha "$WORK/manifest.json")
cp "$WORK/manifest.json" "$OCI/blobs/sha256/$manifest_hex"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_hex" "$(size "$WORK/manifest.json")" >"$OCI/index.json"

# --- a registry, and the image pulled by berth and podman -----------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: 127.0.0.1:$PORT}
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF="127.0.0.1:$PORT/busybox:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:latest" "docker://$REF"

B="$WORK/berth" P="$WORK/podman" RUN="$WORK/run"
mkdir -p "$RUN" && mount -t tmpfs -o mode=0700 berth-bench-run "$RUN"
BERTH_RUN="$BERTH --root $B --runroot $RUN/berth"
$BERTH_RUN pull -q "$REF" >/dev/null
PODMAN="podman --root $P/root --runroot $RUN/podman --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
# In podman's namespaces: private mounts, and (for crun) the hybrid cgroup2 mount hidden.
NSPREP="mount --make-rprivate /"
[ -d /sys/fs/cgroup/unified ] && NSPREP="$NSPREP && mount -t tmpfs none /sys/fs/cgroup/unified"
# podman's default rlimits exceed this host's hard limits (root lacks CAP_SYS_RESOURCE).
PRUN="run --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
# podman changes the host's mounts and networks: keep it in private namespaces.
unshare -m sh -c "mount --make-rprivate / && $PODMAN pull -q --tls-verify=false docker://$REF >/dev/null"

# --- the bare bundle for runc and crun ------------------------------------------------
(cd "$WORK/bundle" && runc spec && jq '.process.args=["/bin/true"] | .process.terminal=false' config.json >c && mv c config.json)

# --- the runs -------------------------------------------------------------------------
hyperfine --runs "$RUNS" --warmup 3 --export-json "$WORK/a.json" --style basic -N \
    -n "berth run --rm" "$BERTH_RUN run --rm --network none $REF true" \
    -n "runc run" "runc --root $RUN/runc run -b $WORK/bundle bench-runc"
hyperfine --runs "$RUNS" --warmup 3 --export-json "$WORK/b.json" --style basic \
    -n "podman run --rm" "unshare -mn sh -c '$NSPREP && $PODMAN $PRUN --rm $REF true'"
# crun refuses hybrid cgroups: hide the cgroup2 mount in a private mount namespace.
unshare -m sh -c "mount --make-rprivate / && { [ ! -d /sys/fs/cgroup/unified ] || mount -t tmpfs none /sys/fs/cgroup/unified; } && \
    hyperfine --runs $RUNS --warmup 3 --export-json $WORK/c.json --style basic -N \
    -n 'crun run' 'crun --root $RUN/crun run -b $WORK/bundle bench-crun'"

jq -r '.results[] | [.command, (.median|tostring)] | @tsv' "$WORK"/[abc].json >"$WORK/medians.tsv"
med() { awk -F'\t' -v n="$1" '$1==n {print $2}' "$WORK/medians.tsv"; }
berth=$(med "berth run --rm") podman=$(med "podman run --rm") runc=$(med "runc run") crun=$(med "crun run")
echo
printf '%-22s %10s %10s %10s\n' "command" "median" "vs crun" "vs podman"
for n in "berth run --rm" "podman run --rm" "runc run" "crun run"; do
    m=$(med "$n")
    printf '%-22s %8.1fms %9.2fx %9.3fx\n' "$n" "$(echo "$m * 1000" | bc -l)" "$(echo "$m / $crun" | bc -l)" "$(echo "$m / $podman" | bc -l)"
done
printf 'targets: berth <= 2x crun (%s), berth <= 0.1x podman (%s)\n' \
    "$(echo "$berth <= 2 * $crun" | bc -l | sed 's/1/met/;s/0/missed/')" \
    "$(echo "$berth <= 0.1 * $podman" | bc -l | sed 's/1/met/;s/0/missed/')"
: "$runc"

# --- monitor memory --------------------------------------------------------------------
id=$($BERTH_RUN run -d --network none "$REF" sleep 600)
sleep 2  # an idle monitor gives back inherited memory after 1 s
mon=$(jq -r .state.monitor_pid "$B/containers/$id/config.json")
mon_rss=$(awk '/VmRSS/ {print $2}' "/proc/$mon/status")
$BERTH_RUN rm -f "$id" >/dev/null
cat >"$WORK/conmon.sh" <<EOF
$NSPREP
cid=\$($PODMAN $PRUN -d $REF sleep 600)
sleep 2
pid=\$(cat $RUN/podman/overlay-containers/\$cid/userdata/conmon.pid 2>/dev/null || pgrep -n conmon)
awk '/VmRSS/ {print \$2}' /proc/\$pid/status
$PODMAN rm -f -t 0 \$cid >/dev/null 2>&1
EOF
conmon_rss=$(unshare -mn sh "$WORK/conmon.sh" || echo "?")
printf '\nidle monitor RSS: berth %s KiB, conmon %s KiB\n' "$mon_rss" "$conmon_rss"

# --- 50 detached containers ---------------------------------------------------------------
t0=$(date +%s.%N)
for i in $(seq 50); do $BERTH_RUN run -d --network none "$REF" sleep 600 >/dev/null; done
t1=$(date +%s.%N)
$BERTH_RUN rm -f $($BERTH_RUN ps -aq) >/dev/null
t2=$(date +%s.%N)
printf '50 detached containers: start %.2fs (%.1f ms each), rm -f %.2fs\n' \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "($t1 - $t0) * 20" | bc -l)" "$(echo "$t2 - $t1" | bc -l)"
