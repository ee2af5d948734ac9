#!/usr/bin/env bash
# Instructions the server executes per operation, counted by valgrind's callgrind: the same
# for the same binary and input however busy the machine is (unlike seconds).
#
#   bench/callgrind.sh small BIN [OUT]    per small-file download (500 x PASV + RETR of 4 KiB)
#   bench/callgrind.sh add BIN [OUT]      per routed SITE ADD 2 3 (1,000, one connection, the
#                                          main server and its in-process workers)
#
# (as root; small needs the harness's data set, which bench/compare.sh prepares). Each run is
# on a fresh server in a network namespace of its own; counting starts after a warm-up. OUT
# (default: a temporary file) is kept for callgrind_annotate.
set -euo pipefail
WHAT=$1 BIN=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
WORK=$FTPBENCH_WORK/callgrind
mkdir -p "$WORK/state" "$WORK/folder"
OUT=${3:-$WORK/callgrind.out}
command -v valgrind > /dev/null || { apt-get update -qq && apt-get install -y -qq valgrind > /dev/null; }
ns=ftpcalc-cg-$$
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; ip netns del "$ns"' EXIT
case $WHAT in
    small) args=(--listen 127.0.0.1:2121 --no-workers --passive-ports 40500-40999); folder=$FTPBENCH_DATA; count=500 ;;
    add) args=(--listen 127.0.0.1:2121 --secret callgrind-secret-0123456789); folder=$WORK/folder; count=1000 ;;
    *) echo "usage: $0 small|add BIN [OUT]" >&2; exit 2 ;;
esac
XDG_STATE_HOME=$WORK/state ip netns exec "$ns" valgrind --tool=callgrind --callgrind-out-file="$OUT" --instr-atstart=no \
    "$BIN" server SV0 "$folder" "${args[@]}" > /dev/null 2> "$WORK/server.log" &
pid=$!
ready=2121; [ "$WHAT" = add ] && ready=2125
for _ in $(seq 100); do ip netns exec "$ns" bash -c "echo > /dev/tcp/127.0.0.1/$ready" 2>/dev/null && break; sleep 0.2; done
ip netns exec "$ns" python3 - "$HARNESS" "$pid" "$WHAT" "$count" <<'PY'
import socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
import ftpbench
pid, what, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
counting = lambda on: subprocess.run(["callgrind_control", "-i", "on" if on else "off", pid], capture_output=True, check=True)
if what == "small":
    c = ftpbench.SyncFtp("127.0.0.1", 2121, epsv=False, timeout=60)
    c.login("ftpbench", "ftpbench"); c.cmd("TYPE I", "2")
    for i in range(100): c.retr(f"small/f{i:04d}.bin")
    counting(True)
    for i in range(100, 100 + count): c.retr(f"small/f{i:04d}.bin")
    counting(False)
else:
    s = socket.create_connection(("127.0.0.1", 2121), timeout=60); f = s.makefile("rb")
    def command(line):
        s.sendall(line.encode() + b"\r\n")
        while (reply := f.readline())[3:4] != b" ": pass
        return reply
    f.readline(); command("USER a"); command("PASS b")
    for _ in range(200): command("SITE ADD 2 3")
    counting(True)
    for _ in range(count): assert command("SITE ADD 2 3").startswith(b"200 5")
    counting(False)
PY
kill "$pid"; wait "$pid" 2>/dev/null || true
total=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' || true)
echo "$WHAT: $((total / count)) instructions per operation ($count operations; $OUT)"
