#!/usr/bin/env bash
# Pull benchmark: a debian minbase image (~50 MB gzip, ~120 MB unpacked,
# ~6,700 files) served by a local registry on 127.0.0.1, pulled with a cold
# (empty) store each run by:
#   berth pull            (release build)
#   skopeo copy + umoci unpack
#   podman pull           (in a private mount namespace, own --root/--runroot)
#   tar -xzf of the layer alone
# Prints medians, ratios to podman and to tar, and berth's peak RSS.
#
# Needs: docker-registry, skopeo, umoci, podman, hyperfine, jq, /usr/bin/time,
# debootstrap (falls back to a tar of /usr when it cannot reach the mirror).
# Env: RUNS (default 5), BENCH_CACHE (default /var/tmp/berth-bench-cache,
# keeps the built layer between runs), BERTH (a berth binary; default: build
# target/release/berth).
set -euo pipefail

RUNS=${RUNS:-5}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BENCH_CACHE:-/var/tmp/berth-bench-cache}
WORK=$(mktemp -d /var/tmp/berth-bench-pull.XXXXXX)
REG_PID=

cleanup() {
    set +e
    if [ -n "$REG_PID" ]; then
        kill "$REG_PID" 2>/dev/null
        wait "$REG_PID" 2>/dev/null
    fi
    # Anything mounted below the work dir (nothing should be).
    grep -o " $WORK[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do
        umount -l "$m"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "bench/pull.sh: $1 is not installed ($2)" >&2; exit 1; }; }
need docker-registry "apt-get install docker-registry"
need skopeo "apt-get install skopeo"
need umoci "apt-get install umoci"
need podman "apt-get install podman"
need hyperfine "apt-get install hyperfine"
need jq "apt-get install jq"
[ -x /usr/bin/time ] || { echo "bench/pull.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

# --- berth -------------------------------------------------------------------
if [ -z "${BERTH:-}" ]; then
    (cd "$REPO" && cargo build --release -p berth --quiet)
    BERTH="$REPO/target/release/berth"
fi

# --- the layer ---------------------------------------------------------------
mkdir -p "$CACHE"
LAYER="$CACHE/minbase.tar.gz"
if [ ! -s "$LAYER" ]; then
    echo "building the image layer (debootstrap --variant=minbase bookworm)..."
    rootfs="$WORK/rootfs"
    if command -v debootstrap >/dev/null &&
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1; then
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    else
        echo "debootstrap failed (see below); using a copy of /usr/lib and /usr/share instead" >&2
        tail -3 "$WORK/debootstrap.log" >&2 || true
        rm -rf "$rootfs" && mkdir -p "$rootfs/usr"
        cp -a /usr/lib /usr/share /usr/bin "$rootfs/usr/"
    fi
    tar -C "$rootfs" --numeric-owner --xattrs -cf "$WORK/layer.tar" .
    gzip -6 -c "$WORK/layer.tar" >"$LAYER.tmp" && mv "$LAYER.tmp" "$LAYER"
    rm -rf "$rootfs" "$WORK/layer.tar"
fi

# --- an OCI layout holding it ------------------------------------------------
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
OCI="$WORK/oci"
mkdir -p "$OCI/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
layer_hex=$(sha "$LAYER")
diff_hex=$(gzip -dc "$LAYER" | sha256sum | cut -d' ' -f1)
unpacked=$(gzip -dc "$LAYER" | wc -c)
cp "$LAYER" "$OCI/blobs/sha256/$layer_hex"
arch=$(case "$(uname -m)" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"created":"2024-01-01T00:00:00Z"}' \
    "$arch" "$diff_hex" >"$WORK/config.json"
config_hex=$(sha "$WORK/config.json")
cp "$WORK/config.json" "$OCI/blobs/sha256/$config_hex"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_hex" "$(size "$WORK/config.json")" "$layer_hex" "$(size "$LAYER")" >"$WORK/manifest.json"
manifest_hex=$(sha "$WORK/manifest.json")
cp "$WORK/manifest.json" "$OCI/blobs/sha256/$manifest_hex"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_hex" "$(size "$WORK/manifest.json")" >"$OCI/index.json"
files=$(gzip -dc "$LAYER" | tar -t | wc -l)
printf 'image: %s gzip, %s unpacked, %s entries\n' \
    "$(numfmt --to=iec "$(size "$LAYER")")" "$(numfmt --to=iec "$unpacked")" "$files"

# --- a registry ----------------------------------------------------------------
# shellcheck source=bench/registry.sh
. "$REPO/bench/registry.sh"
start_registry "$WORK"
REF="127.0.0.1:$PORT/bench/minbase:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:latest" "docker://$REF"

# --- the runs ------------------------------------------------------------------
B="$WORK/berth" S="$WORK/skopeo" P="$WORK/podman" T="$WORK/tar"
# Each run starts from an empty directory. Earlier runs' trees are moved aside,
# not deleted: ext4 slows inode allocation for ~30 s next to freshly deleted
# inodes, which would charge every tool for the previous run's `rm -rf`.
mkdir -p "$WORK/old"
aside() { printf '[ ! -e %s ] || mv %s %s/old/$(date +%%s%%N)' "$1" "$1" "$WORK"; }
podman_pull="unshare -m sh -c 'mount --make-rprivate / && podman --root $P/root --runroot $P/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none pull -q --tls-verify=false docker://$REF >/dev/null'"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/results.json" --style basic \
    --prepare "$(aside "$B")" -n "berth pull" "$BERTH --root $B pull -q $REF" \
    --prepare "$(aside "$S"); $(aside "$S.bundle")" -n "skopeo copy + umoci unpack" \
    "skopeo copy --quiet --src-tls-verify=false docker://$REF oci:$S:latest && umoci unpack --image $S:latest $S.bundle >/dev/null" \
    --prepare "$(aside "$P")" -n "podman pull" "$podman_pull" \
    --prepare "$(aside "$T") && mkdir -p $T" -n "tar -xzf" "tar -xzf $LAYER -C $T"

eval "$(aside "$B")"
/usr/bin/time -v "$BERTH" --root "$B" pull -q "$REF" >/dev/null 2>"$WORK/time.txt"
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")

echo
jq -r '.results[] | [.command, (.median|tostring)] | @tsv' "$WORK/results.json" >"$WORK/medians.tsv"
med() { awk -F'\t' -v n="$1" '$1==n {print $2}' "$WORK/medians.tsv"; }
berth=$(med "berth pull") podman=$(med "podman pull") tarx=$(med "tar -xzf") sk=$(med "skopeo copy + umoci unpack")
printf '%-30s %10s %12s %10s\n' "command" "median" "vs podman" "vs tar"
for n in "berth pull" "skopeo copy + umoci unpack" "podman pull" "tar -xzf"; do
    m=$(med "$n")
    printf '%-30s %9.3fs %11.2fx %9.2fx\n' "$n" "$m" "$(echo "$m / $podman" | bc -l)" "$(echo "$m / $tarx" | bc -l)"
done
printf '\nberth peak RSS: %.1f MiB\n' "$(echo "$rss_kb / 1024" | bc -l)"
printf 'targets: berth <= 0.4x podman (%s), berth < tar -xzf (%s), RSS < 64 MiB (%s)\n' \
    "$(echo "$berth <= 0.4 * $podman" | bc -l | sed 's/1/met/;s/0/missed/')" \
    "$(echo "$berth < $tarx" | bc -l | sed 's/1/met/;s/0/missed/')" \
    "$(echo "$rss_kb < 65536" | bc -l | sed 's/1/met/;s/0/missed/')"
: "$sk"
