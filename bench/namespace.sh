# Sourced by bench/pair.sh, bench/handoff.sh and bench/syscall-profile.sh: one server in a fresh
# network namespace.
#
#   serve_in_namespace NS BIN WORK    BIN: an ftpcalc binary or "pure-ftpd"; WORK: a folder for
#                                     its state. Starts it on 127.0.0.1:2144 (passive ports
#                                     40500-40999) serving $FTPBENCH_DATA and waits until it
#                                     answers; sets SERVER_PID (the process started). With
#                                     SERVER_CPUS set (a taskset list), the server and every
#                                     process it forks run only on those CPUs.
#   end_namespace NS                  stops the server and removes the namespace.
#   pin_placement PIN                 "apart" (server on CPU 0, client on CPU 1), "same" (both
#                                     on CPU 0) or "" (neither pinned): exports SERVER_CPUS and
#                                     sets CLIENT_CPUS, a taskset list for the client.
serve_in_namespace() {
    local ns=$1 bin=$2 work=$3 pin=()
    [ -n "${SERVER_CPUS:-}" ] && pin=(taskset -c "$SERVER_CPUS")
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    if [ "$bin" = pure-ftpd ]; then
        PASV_MIN=40500 PASV_MAX=40999 ip netns exec "$ns" "${pin[@]}" bash "$HARNESS/peers/pure-ftpd/start.sh" 2144 "$FTPBENCH_DATA" "$work/pure" > /dev/null 2>&1 &
    else
        XDG_STATE_HOME=$work/state ip netns exec "$ns" "${pin[@]}" "$bin" server SV0 "$FTPBENCH_DATA" --listen 127.0.0.1:2144 \
            --no-workers --passive-ports 40500-40999 > /dev/null 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 50); do ip netns exec "$ns" bash -c 'echo > /dev/tcp/127.0.0.1/2144' 2>/dev/null && break; sleep 0.1; done
}

end_namespace() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    pkill -x pure-ftpd 2>/dev/null || true
    ip netns del "$1"
}

pin_placement() {
    case $1 in
        apart) export SERVER_CPUS=0; CLIENT_CPUS=1 ;;
        same) export SERVER_CPUS=0; CLIENT_CPUS=0 ;;
        "") CLIENT_CPUS=$(taskset -pc $$ | sed 's/.*: //') ;;
        *) echo "PIN is apart or same" >&2; exit 2 ;;
    esac
}
