#!/usr/bin/env bash
# Curves, not only points (issue 14), measured with the team's harness beside the peers:
#   - NOOP ops/s and p99 on every server, and the routed `SITE ADD 2 3` on ftpcalc, at 1, 16,
#     64, 256 and 1024 connections;
#   - memory per idle logged-in session: every server at 1,000 sessions, ftpcalc also at 4,000
#     (the harness, on the running servers), and ftpcalc at 1,000, 4,000, 10,000 and 16,000 on a
#     fresh server for each level (`ftpcalc bench idle`: a server that already served 1,024 busy
#     connections reuses freed memory for new sessions, so the harness's delta understates; the
#     sessions counted are those that logged in, which the hard descriptor limit bounds), and
#     100,000 at once over 8 fresh servers (`bench/idle-spread.sh`: one process cannot hold
#     more sessions than its descriptor limit allows);
# then bench/plot.py writes the tables (CSV, markdown) and PNG plots (gnuplot) to
# bench/results/curves-DATE/.
#
#   bench/curves.sh            (as root, from the project's root; ~6 min)
#
# Knobs: CONNS (1,16,64,256,1024), DURATION (3 s per level), REPS (1), IDLE_ALL (1000),
# IDLE_OURS (1000,4000), IDLE_FRESH ("1000 4000 10000 16000"), IDLE_SPREAD ("100000 8":
# sessions and processes; empty: skipped, as with QUICK=1), PEERS, QUICK=1; see bench/setup.sh.
set -euo pipefail
REPS=${REPS:-1}
DURATION=${DURATION:-3}
CONNS=${CONNS:-1,16,64,256,1024}
IDLE_ALL=${IDLE_ALL:-1000}
IDLE_OURS=${IDLE_OURS:-1000,4000}
IDLE_SPREAD=${IDLE_SPREAD-100000 8}
[ "${QUICK:-0}" = 1 ] && IDLE_SPREAD=""
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }

run() { # OUT TARGETS... -- OPTIONS...
    local out=$1; shift
    python3 "$HARNESS/ftpbench.py" run "$@" --user "$FTPBENCH_USER" --password "$FTPBENCH_PASS" \
        --data-dir "$FTPBENCH_DATA" --reps "$REPS" --quiet-wait "${QUIET_EACH:-10}" --quiet-budget 240 \
        --out "$out" "${labels[@]}" > /dev/null
}
# ftpcalc's memory per idle session on a fresh server for each level: sessions,KiB per session.
fresh_idle() {
    local csv=$1 bin=$OURS_BIN
    echo "sessions,kib_per_session" > "$csv"
    for n in ${IDLE_FRESH:-1000 4000 10000 16000}; do
        rm -rf "$FTPBENCH_WORK/fresh" && mkdir -p "$FTPBENCH_WORK/fresh/ftp"
        XDG_STATE_HOME="$FTPBENCH_WORK/fresh" "$bin" server SV0 "$FTPBENCH_WORK/fresh/ftp" --listen 127.0.0.1:2131 \
            --no-workers --max-connections 100000 --max-connections-per-ip 100000 > /dev/null 2>&1 &
        local pid=$!
        sleep 1
        local report logged_in
        report=$("$bin" bench --server 127.0.0.1:2131 idle -n "$n" --concurrency 16 --hold 3 --pid "$pid")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        logged_in=$(echo "$report" | sed -nE 's/^idle: ([0-9]+) of .*/\1/p')
        echo "$logged_in,$(echo "$report" | sed -nE 's/.* ([0-9.]+) KiB per session/\1/p')" >> "$csv"
    done
}
# ftpcalc's memory per idle session beyond what one process can hold, over several fresh
# servers (bench/idle-spread.sh): sessions,kib_per_session,processes (no row when skipped).
spread_idle() {
    local csv=$1 report
    echo "sessions,kib_per_session,processes" > "$csv"
    [ -n "$IDLE_SPREAD" ] || return 0
    # shellcheck disable=SC2086 # two words: sessions and processes
    report=$(bash "$ROOT/bench/idle-spread.sh" "$OURS_BIN" $IDLE_SPREAD 45)
    echo "$report" > "${csv%.csv}.txt"
    printf '%s,%s,%s\n' "$(sed -nE 's/^sessions established at once: ([0-9]+) of .*/\1/p' <<< "$report")" \
        "$(sed -nE "s/^servers' RSS: .* ([0-9.]+) KiB per session$/\1/p" <<< "$report")" "${IDLE_SPREAD#* }" >> "$csv"
}
base=$OUT_DIR/curves-$stamp
run "$base-noop.jsonl" "${ours[@]}" "${targets[@]}" --scenarios cmd_rtt --cmd NOOP --conns "$CONNS" --duration "$DURATION"
run "$base-site-add.jsonl" "${ours[@]}" --scenarios cmd_rtt --cmd 'SITE ADD 2 3' --conns "$CONNS" --duration "$DURATION"
run "$base-idle-all.jsonl" "${ours[@]}" "${targets[@]}" --scenarios idle_conns --idle "$IDLE_ALL" --idle-hold 3
run "$base-idle-ours.jsonl" "${ours[@]}" --scenarios idle_conns --idle "$IDLE_OURS" --idle-hold 3
fresh_idle "$base-idle-fresh.csv"
spread_idle "$base-idle-spread.csv"
python3 "$ROOT/bench/plot.py" --out-dir "$ROOT/bench/results/curves-$stamp" --fresh-idle "$base-idle-fresh.csv" \
    --spread-idle "$base-idle-spread.csv" \
    "$base-noop.jsonl" "$base-site-add.jsonl" "$base-idle-all.jsonl" "$base-idle-ours.jsonl"
echo "curves: $ROOT/bench/results/curves-$stamp"
