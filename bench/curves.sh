#!/usr/bin/env bash
# Curves, not only points (issue 14), measured with the team's harness beside the peers:
#   - NOOP ops/s and p99 on every server, and the routed `SITE ADD 2 3` on ftpcalc, at 1, 16,
#     64, 256 and 1024 connections;
#   - memory per idle logged-in session: every server at 1,000 sessions, ftpcalc also at 4,000;
# then bench/plot.py writes the tables (CSV, markdown) and PNG plots (gnuplot) to
# bench/results/curves-DATE/.
#
#   bench/curves.sh            (as root, from the project's root; ~5 min)
#
# Knobs: CONNS (1,16,64,256,1024), DURATION (3 s per level), REPS (1), IDLE_ALL (1000),
# IDLE_OURS (1000,4000), PEERS, QUICK=1; see bench/setup.sh.
set -euo pipefail
REPS=${REPS:-1}
DURATION=${DURATION:-3}
CONNS=${CONNS:-1,16,64,256,1024}
IDLE_ALL=${IDLE_ALL:-1000}
IDLE_OURS=${IDLE_OURS:-1000,4000}
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }

run() { # OUT TARGETS... -- OPTIONS...
    local out=$1; shift
    python3 "$HARNESS/ftpbench.py" run "$@" --user "$FTPBENCH_USER" --password "$FTPBENCH_PASS" \
        --data-dir "$FTPBENCH_DATA" --reps "$REPS" --quiet-wait "${QUIET_EACH:-10}" --quiet-budget 240 \
        --out "$out" "${labels[@]}" > /dev/null
}
base=$OUT_DIR/curves-$stamp
run "$base-noop.jsonl" "${ours[@]}" "${targets[@]}" --scenarios cmd_rtt --cmd NOOP --conns "$CONNS" --duration "$DURATION"
run "$base-site-add.jsonl" "${ours[@]}" --scenarios cmd_rtt --cmd 'SITE ADD 2 3' --conns "$CONNS" --duration "$DURATION"
run "$base-idle-all.jsonl" "${ours[@]}" "${targets[@]}" --scenarios idle_conns --idle "$IDLE_ALL" --idle-hold 3
run "$base-idle-ours.jsonl" "${ours[@]}" --scenarios idle_conns --idle "$IDLE_OURS" --idle-hold 3
python3 "$ROOT/bench/plot.py" --out-dir "$ROOT/bench/results/curves-$stamp" \
    "$base-noop.jsonl" "$base-site-add.jsonl" "$base-idle-all.jsonl" "$base-idle-ours.jsonl"
echo "curves: $ROOT/bench/results/curves-$stamp"
