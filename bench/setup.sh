# Sourced by bench/compare.sh and bench/curves.sh (as root, from anywhere): builds ftpcalc
# (release), prepares the harness's data set in ../shared/bench, waits for an earlier run's
# TIME_WAIT sockets to go, starts the peers named in $PEERS (default: vsftpd pure-ftpd) and
# `ftpcalc server` on 127.0.0.1:2121 (workers on 2122-2125), and stops them all on exit.
# Leaves: $ROOT, $HARNESS, $OUT_DIR, $stamp, and the arrays `ours` and `targets` (ftpbench.py
# --target options) and `labels` (--meta options).
# Knobs: PEERS, BIG_MIB, SMALL_COUNT, QUICK=1 (64 MiB, 200 files), OUT_DIR, FTPCALC_BIN.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$(cd "$ROOT/../shared/bench" && pwd)
. "$HARNESS/peers/common.sh"
[ "$(id -u)" = 0 ] || { echo "run as root (the peers need it)" >&2; exit 1; }

PEERS=${PEERS:-vsftpd pure-ftpd}
declare -A PORT=([vsftpd]=2111 [pure-ftpd]=2112 [proftpd]=2113)
OURS_PORT=2121
BIG_MIB=${BIG_MIB:-1024}
SMALL_COUNT=${SMALL_COUNT:-2000}
if [ "${QUICK:-0}" = 1 ]; then
    BIG_MIB=64 SMALL_COUNT=200
    FTPBENCH_DATA=$FTPBENCH_WORK/quick-data
fi
OUT_DIR=${OUT_DIR:-$ROOT/target/bench-results}
mkdir -p "$OUT_DIR" "$FTPBENCH_WORK/ours"
stamp=$(date +%F-%H%M)
ulimit -n "$(ulimit -Hn)"

[ -d "$PEERS_ROOT/vsftpd/usr" ] && id "$FTPBENCH_USER" >/dev/null 2>&1 || "$HARNESS/peers/install_peers.sh"
# FTPCALC_BIN: measure that binary (a build of bench/pgo.sh, or bench/floor's server) instead of
# the release build; the results name it.
OURS_BIN=${FTPCALC_BIN:-$ROOT/target/release/ftpcalc}
OURS_BUILD=release
if [ -n "${FTPCALC_BIN:-}" ]; then OURS_BUILD="FTPCALC_BIN=$(basename "$FTPCALC_BIN")"; else (cd "$ROOT" && cargo build --release --quiet); fi
python3 "$HARNESS/ftpbench.py" prepare --data-dir "$FTPBENCH_DATA" --big-mib "$BIG_MIB" \
    --small-count "$SMALL_COUNT" --owner "$FTPBENCH_USER"
find "$FTPBENCH_DATA/upload" -mindepth 1 -delete

# An earlier run's connections linger in TIME_WAIT for a minute (some 12,000 per small-file
# scenario), and so many slow the connections of the next run (BENCHMARKS.md, eleventh and
# thirteenth rounds): wait, at most 70 s, until fewer than 1,000 are left.
for waited in $(seq 0 70); do
    lingering=$(ss -Htan state time-wait | wc -l)
    [ "$lingering" -lt 1000 ] && break
    [ "$waited" = 0 ] && echo "waiting for $lingering sockets in TIME_WAIT to go (at most 70 s)" >&2
    sleep 1
done
[ "$waited" -gt 0 ] && echo "waited ${waited} s for TIME_WAIT sockets ($lingering left)" >&2

started=() ours_pid=
cleanup() {
    [ -n "$ours_pid" ] && kill "$ours_pid" 2>/dev/null && wait "$ours_pid" 2>/dev/null || true
    for name in "${started[@]}"; do "$HARNESS/peers/stop_peer.sh" "$name" "${PORT[$name]}" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The peers share 40000-40499, ftpcalc has 40500-40999: only one target is active at a time.
export PASV_MIN=40000 PASV_MAX=40499
targets=() labels=()
for name in $PEERS; do
    pidfile=$("$HARNESS/peers/start_peer.sh" "$name" "${PORT[$name]}" "$FTPBENCH_DATA")
    started+=("$name")
    targets+=(--target "$name=127.0.0.1:${PORT[$name]},pidfile=$pidfile")
    labels+=(--meta "$name=$(cat "$PEERS_ROOT/$name/.deb-version") (Debian 12 package)")
done
# Every benchmark client comes from 127.0.0.1: the per-address limit (50 by default, a
# product safety default) is lifted for the run, as an operator would for a load balancer.
"$OURS_BIN" server SV0 "$FTPBENCH_DATA" --listen "127.0.0.1:$OURS_PORT" \
    --passive-ports 40500-40999 --secret bench-secret-0123456789 \
    --max-connections 100000 --max-connections-per-ip 100000 \
    > "$FTPBENCH_WORK/ours/console.log" 2> "$FTPBENCH_WORK/ours/stderr.log" &
ours_pid=$!
echo "$ours_pid" > "$FTPBENCH_WORK/ours/pid"
for _ in $(seq 100); do grep -q '^SV4' "$FTPBENCH_WORK/ours/console.log" 2>/dev/null && break; sleep 0.1; done
ours=(--target "ftpcalc=127.0.0.1:$OURS_PORT,pidfile=$FTPBENCH_WORK/ours/pid")
labels+=(--meta "ftpcalc=$(git -C "$ROOT" rev-parse --short HEAD) ($OURS_BUILD build)")
