# Sourced by bench scripts: start_registry DIR starts Debian's docker-registry
# on a free 127.0.0.1 port with its storage under DIR, waits until it answers,
# and sets PORT and REG_PID (the caller kills REG_PID when done).
start_registry() {
    local dir=$1
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$dir/registry.yml" <<EOF2
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/registry}}
http: {addr: 127.0.0.1:$PORT}
EOF2
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && return 0
        sleep 0.1
    done
    echo "docker-registry did not start: $(tail -3 "$dir/registry.log")" >&2
    return 1
}
