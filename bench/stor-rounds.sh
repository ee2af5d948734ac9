#!/usr/bin/env bash
# Uploads of the harness's 1 GiB file with curl -T, servers taken in turn, each upload to a
# fresh server in a fresh network namespace with the page cache dropped before it (in the
# harness the servers upload one after another into one folder and namespace, and on this VM
# their runs spread 3-6x).
#
#   bench/stor-rounds.sh ROUNDS TARGET...     (as root; TARGET is an ftpcalc binary, "vsftpd"
#                                              or "pure-ftpd")
#
# Prints MB/s, curl's time and the server's CPU time per upload (all its processes, counted by
# a cgroup v1 cpuacct group of its own: vsftpd and pure-ftpd serve each session in a child),
# then the median and range per target. Needs the harness's data set and peers (bench/compare.sh prepares both).
set -euo pipefail
ROUNDS=$1
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
WORK=$FTPBENCH_WORK/stor-rounds
mkdir -p "$WORK/state"
CPUACCT=/sys/fs/cgroup/cpuacct
[ -d "$CPUACCT" ] || { echo "needs the cgroup v1 cpuacct hierarchy at $CPUACCT" >&2; exit 2; }
GROUP=$CPUACCT/ftpcalc-stor-rounds-$$

one() { # TARGET
    local ns=ftpcalc-stor-$$ pid up=$WORK/up c0 c1 out
    mkdir "$GROUP"
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    rm -rf "$up" && mkdir -p "$up" && chown "$FTPBENCH_USER" "$up" 2>/dev/null || true
    case $1 in
        vsftpd | pure-ftpd)
            mkdir -p "$WORK/$1"
            PASV_MIN=40500 PASV_MAX=40999 ip netns exec "$ns" bash "$HARNESS/peers/$1/start.sh" 2144 "$up" "$WORK/$1" > /dev/null 2>&1 &
            ;;
        *)
            XDG_STATE_HOME=$WORK/state ip netns exec "$ns" "$1" server SV0 "$up" --listen 127.0.0.1:2144 \
                --no-workers --passive-ports 40500-40999 > /dev/null 2>&1 &
            ;;
    esac
    pid=$! # ip netns exec and the peers' start.sh exec the server: this is its process
    echo "$pid" > "$GROUP/cgroup.procs" # its session processes, forked later, follow it
    for _ in $(seq 50); do ip netns exec "$ns" bash -c 'echo > /dev/tcp/127.0.0.1/2144' 2>/dev/null && break; sleep 0.1; done
    sync
    echo 1 > /proc/sys/vm/drop_caches
    c0=$(cat "$GROUP/cpuacct.usage")
    out=$(ip netns exec "$ns" curl -s --max-time 120 -T "$FTPBENCH_DATA/big.bin" --ftp-pasv -u "$FTPBENCH_USER:$FTPBENCH_PASS" \
        ftp://127.0.0.1:2144/upload.bin -w '%{speed_upload} %{time_total}' -o /dev/null)
    sleep 0.5 # the peers' session process finishes
    c1=$(cat "$GROUP/cpuacct.usage")
    echo "$1 $(echo "$out" | awk '{printf "%.0f %.2f", $1 / 1e6, $2}') $(awk -v t="$(( c1 - c0 ))" 'BEGIN {printf "%.2f", t / 1e9}')"
    xargs -r kill < "$GROUP/cgroup.procs" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -s "$GROUP/cgroup.procs" ] || break; sleep 0.1; done
    rmdir "$GROUP"
    ip netns del "$ns"
    rm -rf "$up"
}

echo "target MB/s curl_s server_cpu_s"
for _ in $(seq "$ROUNDS"); do
    for target in "$@"; do one "$target"; done
done | tee "$WORK/runs.txt"
python3 - "$WORK/runs.txt" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    words = line.split()
    if len(words) == 4 and words[0] != "target":
        runs[words[0]].append((float(words[1]), float(words[3])))
for target, values in runs.items():
    rates, cpus = [r for r, _ in values], [c for _, c in values]
    print(f"{target}: {statistics.median(rates):.0f} MB/s median ({min(rates):.0f}-{max(rates):.0f}), "
          f"server CPU {statistics.median(cpus):.2f} s ({min(cpus):.2f}-{max(cpus):.2f}), {len(values)} uploads")
PY
