#!/usr/bin/env bash
# Paired small-file runs: two servers measured alternately, each run on a fresh server in a
# fresh network namespace (so that no run inherits the TIME_WAIT sockets of the one before,
# which slowed later runs by up to 2x on this machine), with the harness's own client.
#
#   bench/pair.sh BIN_A BIN_B [PAIRS]      (as root; BIN is an ftpcalc binary or "pure-ftpd")
#   PIN=apart bench/pair.sh ...            the server on CPU 0, the client on CPU 1
#   PIN=same bench/pair.sh ...             both on CPU 0
#
# Unpinned (the default, as in the harness), where the scheduler places the client against the
# server moves a run by 1.3-1.4x: a download's four hand-offs cost a context switch each on
# one CPU, and a wake-up of an idle vCPU (an interrupt between vCPUs) each on two. Pinning takes
# that lottery out of a comparison; `apart` is the harness's usual case.
#
# Each run downloads the harness's 2,000 files of 4 KiB over one session (PASV + RETR each) and
# prints files/s, the server's CPU per file (user and system, from /proc), and the server's
# context switches per file by thread; then the medians per side, and the median ratio of the
# pairs with a bootstrap 95% interval. Needs the harness's data set and peers (bench/compare.sh
# prepares both).
set -euo pipefail
A=$1 B=$2 PAIRS=${3:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
. "$ROOT/bench/namespace.sh"
pin_placement "${PIN:-}"
WORK=$FTPBENCH_WORK/pair
mkdir -p "$WORK/pure" "$WORK/state"
cat > "$WORK/client.py" <<'PY'
import collections, glob, os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import ftpbench
port, pid = int(sys.argv[2]), sys.argv[3]
tick = os.sysconf("SC_CLK_TCK")
def pids():
    return [pid] if pid.isdigit() else subprocess.run(["pgrep", "-x", pid], capture_output=True, text=True).stdout.split()
def cpu():
    user = system = 0
    for p in pids():
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]); system += int(fields[12])
    return user / tick, system / tick
def switches():
    count = collections.Counter()
    for p in pids():
        for task in glob.glob(f"/proc/{p}/task/*"):
            try:
                name = open(task + "/comm").read().strip()
                count[name] += sum(int(line.split()[1]) for line in open(task + "/status") if "ctxt_switches" in line)
            except OSError:
                pass
    return count
c = ftpbench.SyncFtp("127.0.0.1", port, epsv=False)
c.login("ftpbench", "ftpbench")
c.cmd("TYPE I", "2")
started, (u0, s0), w0 = time.monotonic(), cpu(), switches()
for i in range(2000):
    c.retr(f"small/f{i:04d}.bin")
took, (u1, s1), w1 = time.monotonic() - started, cpu(), switches()
per = {name: round((w1[name] - w0[name]) / 2000, 1) for name in w1 if w1[name] != w0[name]}
print(f"{2000 / took:.0f} {(u1 - u0 + s1 - s0) / 2000 * 1e6:.0f} {(u1 - u0) / 2000 * 1e6:.0f} {sum(per.values()):.1f} {per}")
c.quit()
PY
one() { # BIN TAG
    local ns=ftpcalc-pair-$$ measured
    cat "$FTPBENCH_DATA"/small/* > /dev/null  # into the page cache (see bench/compare.sh)
    serve_in_namespace "$ns" "$1" "$WORK"
    measured=$SERVER_PID
    [ "$1" = pure-ftpd ] && measured=pure-ftpd
    echo "$2 $(ip netns exec "$ns" taskset -c "$CLIENT_CPUS" python3 "$WORK/client.py" "$HARNESS" 2144 "$measured")"
    end_namespace "$ns"
}
echo "side files/s cpu_us_per_file user_us_per_file switches_per_file {thread: switches}"
for _ in $(seq "$PAIRS"); do one "$A" A; one "$B" B; done | tee "$WORK/runs.txt"
python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
runs = [line.split(maxsplit=5) for line in open(sys.argv[1]) if line[:2] in ("A ", "B ")]
rows = [run for run in runs if len(run) >= 5]  # a run whose client failed printed only its side
if len(rows) < len(runs):
    print(f"{len(runs) - len(rows)} run(s) failed and are left out")
for side in "AB":
    if not any(row[0] == side for row in rows):
        continue
    mine = [row for row in rows if row[0] == side]
    median = lambda column: statistics.median(float(row[column]) for row in mine)
    print(f"{side}: files/s {median(1):.0f} (range {min(int(r[1]) for r in mine)}-{max(int(r[1]) for r in mine)}), "
          f"CPU {median(2):.0f} us/file (user {median(3):.0f}), {median(4):.1f} context switches/file")
# The two runs of a pair are adjacent, so their ratio cancels the machine's slow drift; the
# interval is a bootstrap of the median of those ratios (fixed seed: the same runs give the
# same interval). An interval that contains 1.00 does not tell the two apart.
ratios = sorted(float(a[1]) / float(b[1]) for a, b in zip(runs[0::2], runs[1::2]) if len(a) >= 5 and len(b) >= 5)
if ratios:
    import random
    draw = random.Random(14)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(2000))
    print(f"A/B per pair: median {statistics.median(ratios):.3f}, 95% interval {medians[50]:.3f}-{medians[1949]:.3f} "
          f"({len(ratios)} pairs; range {ratios[0]:.3f}-{ratios[-1]:.3f})")
PY
