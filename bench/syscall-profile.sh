#!/usr/bin/env bash
# Where a server's CPU goes per small download, by system call: `perf record` of the server
# while the harness's client downloads its 2,000 files of 4 KiB over one session (fresh server,
# fresh network namespace, files in the page cache first).
#
#   bench/syscall-profile.sh BIN [PIN]     (as root; BIN is an ftpcalc binary or "pure-ftpd";
#                                           PIN: apart or same, as in bench/pair.sh)
#
# Prints files/s (slowed by the sampling), then the server's CPU per file: in user space, and in
# the kernel under each system call (a sample counts for the outermost system call on its stack),
# with the share spent waking another thread (`sock_def_readable`: data arrived for a socket
# someone sleeps on). Callgrind (bench/callgrind.sh) counts user-space instructions exactly but
# sees nothing of the kernel; this shows both, in time. Needs perf and the harness's data set
# (bench/compare.sh prepares it).
set -euo pipefail
BIN=$1 PIN=${2:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
. "$ROOT/bench/namespace.sh"
command -v perf > /dev/null || { echo "syscall-profile.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }
pin_placement "$PIN"
WORK=$FTPBENCH_WORK/syscall-profile
mkdir -p "$WORK/pure" "$WORK/state"
HZ=4999 FILES=2000
ns=ftpcalc-sysprof-$$
cat "$FTPBENCH_DATA"/small/* > /dev/null  # into the page cache (see bench/compare.sh)
serve_in_namespace "$ns" "$BIN" "$WORK"
trap 'end_namespace "$ns"' EXIT
measured=$SERVER_PID
[ "$BIN" = pure-ftpd ] && measured=""
rm -f "$WORK/ready" "$WORK/perf.data"
# The client logs in and warms up, then waits for perf to start before the measured downloads.
ip netns exec "$ns" taskset -c "$CLIENT_CPUS" python3 - "$HARNESS" "$WORK" "$FILES" <<'PY' &
import os, sys, time
sys.path.insert(0, sys.argv[1])
import ftpbench
work, files = sys.argv[2], int(sys.argv[3])
c = ftpbench.SyncFtp("127.0.0.1", 2144)
c.login("ftpbench", "ftpbench")
c.cmd("TYPE I", "2")
for i in range(200):
    c.retr(f"small/f{i:04d}.bin")
open(f"{work}/ready", "w").close()
while not os.path.exists(f"{work}/go"):
    time.sleep(0.01)
started = time.monotonic()
for i in range(files):
    c.retr(f"small/f{i:04d}.bin")
print(f"{files / (time.monotonic() - started):.0f} files/s (while sampled)")
open(f"{work}/done", "w").close()
c.quit()
PY
client=$!
rm -f "$WORK/go" "$WORK/done"
for _ in $(seq 300); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
# pure-ftpd serves each session in processes of its own: all of its processes are sampled.
[ -z "$measured" ] && measured=$(pgrep -d, -x pure-ftpd)
perf record -q -g -F "$HZ" -p "$measured" -o "$WORK/perf.data" > /dev/null 2>&1 &
perf_pid=$!
sleep 0.5  # perf attached
touch "$WORK/go"
for _ in $(seq 600); do [ -e "$WORK/done" ] && break; sleep 0.1; done
kill -INT "$perf_pid" 2> /dev/null || true
wait "$perf_pid" || true
wait "$client"
cat > "$WORK/by-syscall.py" <<'PY'
import collections, re, sys
hz, files = float(sys.argv[1]), float(sys.argv[2])
time = collections.Counter()
waking = collections.Counter()
def account(frames):
    # frames: innermost first, as "symbol+offset (object)"
    names = [frame.split("+")[0].split(" (")[0] for frame in frames]
    # (`write` and `read` enter through `ksys_write`/`ksys_read`, the rest through `__x64_sys_*`.)
    calls = [name for name in names if re.match(r"__(x64|do)_sys_|ksys_", name)]
    if calls:
        where = re.sub(r"^(__(x64|do)_sys_|ksys_)", "", calls[-1])
    elif frames and "kernel.kallsyms" not in frames[0]:
        where = "user"
    else:
        where = "kernel, outside system calls"
    time[where] += 1
    if "sock_def_readable" in names:
        waking[where] += 1
stack = []
for line in sys.stdin:
    line = line.strip()
    if not line:
        if stack:
            account(stack[1:])
        stack = []
        continue
    parts = line.split(None, 1)
    stack.append(parts[1] if len(parts) > 1 else parts[0])
if stack:
    account(stack[1:])
per_file = lambda samples: samples / hz / files * 1e6
print(f"server CPU per file: {per_file(sum(time.values())):.1f} us (sampled at {hz:.0f} Hz)")
for where, samples in time.most_common(16):
    woke = f"   of which waking a sleeper {per_file(waking[where]):.1f}" if waking[where] else ""
    print(f"  {where:32s} {per_file(samples):6.1f} us{woke}")
PY
perf script -i "$WORK/perf.data" -F comm,ip,sym,dso 2> /dev/null | python3 "$WORK/by-syscall.py" "$HZ" "$FILES"
