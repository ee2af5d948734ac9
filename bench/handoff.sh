#!/usr/bin/env bash
# Where the wall time of a small download goes, hand-off by hand-off: two servers measured
# alternately (fresh server, fresh network namespace, files read into the page cache first),
# each run under `perf sched record -a`.
#
#   bench/handoff.sh BIN_A BIN_B [PAIRS]      (as root; BIN is an ftpcalc binary or "pure-ftpd")
#
# A run downloads the harness's 2,000 files of 4 KiB over one session (PASV, connect, RETR,
# data, 226) and prints, as medians over the run:
#   - the client's phases (us): PASV, connect, RETR to 150, data, 226, and the whole download;
#   - per hand-off from the client to the server (PASV and RETR, two per download): the server's
#     response (the client wakes the server -> the server first wakes the client), of which the
#     scheduling delay (woken -> on a CPU: the cost of waking an idle vCPU, paid by any server);
#   - the client's turn (the server's last wake of the client -> the client wakes the server);
#   - how often a server thread slept in D state (a page-cache miss: the files are read into the
#     cache before each run, since this VM's DAMON pages out what was not read for a minute).
# The response minus the delay is the server's own work per hand-off. Needs the harness's data
# set and peers (bench/compare.sh prepares both) and perf.
set -euo pipefail
A=$1 B=$2 PAIRS=${3:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
WORK=$FTPBENCH_WORK/handoff
mkdir -p "$WORK/pure" "$WORK/state"
command -v perf > /dev/null || { echo "handoff.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }

one() { # BIN TAG
    local ns=ftpcalc-handoff-$$ pid server
    cat "$FTPBENCH_DATA"/small/* > /dev/null
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    if [ "$1" = pure-ftpd ]; then
        PASV_MIN=40500 PASV_MAX=40999 ip netns exec "$ns" bash "$HARNESS/peers/pure-ftpd/start.sh" 2144 "$FTPBENCH_DATA" "$WORK/pure" > /dev/null 2>&1 &
        server=pure-ftpd
    else
        XDG_STATE_HOME=$WORK/state ip netns exec "$ns" "$1" server SV0 "$FTPBENCH_DATA" --listen 127.0.0.1:2144 \
            --no-workers --passive-ports 40500-40999 > /dev/null 2>&1 &
        server=tokio-rt-worker
    fi
    pid=$!
    for _ in $(seq 50); do ip netns exec "$ns" bash -c 'echo > /dev/tcp/127.0.0.1/2144' 2>/dev/null && break; sleep 0.1; done
    local phases
    phases=$(perf sched record -a -o "$WORK/sched.data" -- ip netns exec "$ns" python3 "$ROOT/bench/handoff.py" client "$HARNESS" 2144 2> "$WORK/client.err")
    echo "$2 $phases $(perf script -i "$WORK/sched.data" -F comm,tid,cpu,time,event,trace 2> /dev/null | python3 "$ROOT/bench/handoff.py" analyse "$server")"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pkill -x pure-ftpd 2>/dev/null || true
    ip netns del "$ns"
}
echo "side pasv connect retr_150 data 226 download | response sched_delay client_turn d_sleeps (us, medians)"
for _ in $(seq "$PAIRS"); do one "$A" A; one "$B" B; done | tee "$WORK/runs.txt"
