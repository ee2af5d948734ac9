#!/usr/bin/env bash
# TOTAL idle logged-in sessions held at once on this machine, spread over PROCESSES ftpcalc
# servers (one process cannot hold more sessions than its descriptor limit allows: 20,000 here,
# a hard limit this machine does not let us raise), with a normal client served meanwhile.
#
#   bench/idle-spread.sh BIN TOTAL PROCESSES [HOLD_SECONDS]     (e.g. 100000 8 45)
#
# Each server (--no-workers, fresh state and folder, 127.0.0.1:2151...) gets TOTAL/PROCESSES
# sessions from an `ftpcalc bench idle` client of its own (clients have the same descriptor
# limit), all clients at once. While they hold, the script counts the established sessions
# (`ss`) until all TOTAL are up, sums the servers' resident memory, and has curl list the
# first server's folder and download 1 MiB from it (compared byte for byte). Then each client
# reports its server's memory per session (RSS while holding minus RSS before, per session).
# Bounded: logins time out in the client, and the wait for all sessions ends after HOLD.
set -euo pipefail
BIN=$(realpath "$1") TOTAL=$2 PROCESSES=$3 HOLD=${4:-60}
[[ "$TOTAL" =~ ^[1-9][0-9]*$ && "$PROCESSES" =~ ^[1-9][0-9]*$ && "$HOLD" =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: $0 BIN TOTAL PROCESSES [HOLD_SECONDS] (positive whole numbers)" >&2; exit 2; }
EACH=$(( TOTAL / PROCESSES ))
(( EACH * PROCESSES == TOTAL )) || { echo "TOTAL must be a multiple of PROCESSES" >&2; exit 2; }
(( PROCESSES <= 40 )) || { echo "at most 40 processes (ports 2151-2190)" >&2; exit 2; }
WORK=${FTPBENCH_WORK:-/var/tmp/ftpbench}/idle-spread
rm -rf "$WORK" && mkdir -p "$WORK"
servers=() clients=()
cleanup() {
    for pid in "${clients[@]}" "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
for i in $(seq "$PROCESSES"); do
    mkdir -p "$WORK/$i/ftp" "$WORK/$i/state"
    # Passive ports: a slice of 40000-40999 per server.
    XDG_STATE_HOME=$WORK/$i/state "$BIN" server SV0 "$WORK/$i/ftp" --listen "127.0.0.1:$((2150 + i))" --no-workers \
        --passive-ports "$((40000 + i * 20))-$((40019 + i * 20))" \
        --max-connections 100000 --max-connections-per-ip 100000 > "$WORK/$i/server.log" 2>&1 &
    servers+=($!)
done
head -c 1048576 /dev/urandom > "$WORK/1/ftp/one-mib.bin"
for i in $(seq "$PROCESSES"); do
    for _ in $(seq 100); do bash -c "echo > /dev/tcp/127.0.0.1/$((2150 + i))" 2>/dev/null && break; sleep 0.1; done
done
rss_sum() { local sum=0; for pid in "${servers[@]}"; do sum=$(( sum + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") )); done; echo "$sum"; }
before=$(rss_sum)
started=$(date +%s.%N)
for i in $(seq "$PROCESSES"); do
    "$BIN" bench --server "127.0.0.1:$((2150 + i))" idle -n "$EACH" --concurrency 16 --hold "$HOLD" \
        --pid "${servers[$((i - 1))]}" > "$WORK/$i/client.txt" 2>&1 &
    clients+=($!)
done
established() { ss -Htn state established "( sport >= :2151 and sport <= :$((2150 + PROCESSES)) )" | wc -l; }
peak=0
deadline=$(( $(date +%s) + HOLD ))
while (( $(date +%s) < deadline )); do
    now=$(established)
    (( now > peak )) && peak=$now
    (( now >= TOTAL )) && break
    sleep 1
done
up=$(date +%s.%N)
holding=$(rss_sum)
echo "sessions established at once: $peak of $TOTAL, after $(awk "BEGIN {printf \"%.1f\", $up - $started}") s"
echo "servers' RSS: $before KiB before, $holding KiB holding," \
    "$(awk "BEGIN {printf \"%.2f\", ($holding - $before) / ($peak > 0 ? $peak : 1)}") KiB per session"
# A normal client meanwhile: a listing, and 1 MiB compared byte for byte.
served=$(date +%s%N)
listing=$(curl -sS --max-time 20 "ftp://127.0.0.1:2151/")
curl -sS --max-time 20 -o "$WORK/got.bin" "ftp://127.0.0.1:2151/one-mib.bin"
cmp -s "$WORK/got.bin" "$WORK/1/ftp/one-mib.bin" && same=identical || same=DIFFERENT
served=$(( ($(date +%s%N) - served) / 1000000 ))
echo "curl meanwhile: listing of $(echo "$listing" | grep -c one-mib.bin) file, 1 MiB download $same, both in $served ms;" \
    "sessions still established: $(established)"
status=0
for pid in "${clients[@]}"; do wait "$pid" || status=1; done
clients=()
for i in $(seq "$PROCESSES"); do echo "server $i: $(tr '\n' ' ' < "$WORK/$i/client.txt")"; done
exit "$status"
