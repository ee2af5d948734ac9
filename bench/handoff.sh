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
. "$ROOT/bench/namespace.sh"
WORK=$FTPBENCH_WORK/handoff
mkdir -p "$WORK/pure" "$WORK/state"
command -v perf > /dev/null || { echo "handoff.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }

one() { # BIN TAG
    local ns=ftpcalc-handoff-$$ server=tokio-rt-worker phases
    [ "$1" = pure-ftpd ] && server=pure-ftpd
    cat "$FTPBENCH_DATA"/small/* > /dev/null
    serve_in_namespace "$ns" "$1" "$WORK"
    phases=$(perf sched record -a -o "$WORK/sched.data" -- ip netns exec "$ns" python3 "$ROOT/bench/handoff.py" client "$HARNESS" 2144 2> "$WORK/client.err")
    echo "$2 $phases $(perf script -i "$WORK/sched.data" -F comm,tid,cpu,time,event,trace 2> /dev/null | python3 "$ROOT/bench/handoff.py" analyse "$server")"
    end_namespace "$ns"
}
echo "side pasv connect retr_150 data 226 download | response sched_delay client_turn d_sleeps (us, medians)"
for _ in $(seq "$PAIRS"); do one "$A" A; one "$B" B; done | tee "$WORK/runs.txt"
