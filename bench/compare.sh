#!/usr/bin/env bash
# Measure ftpcalc side by side with peer FTP servers, with the team's harness in ../shared/bench.
#
#   bench/compare.sh [extra ftpbench.py run options]      (as root, from the project's root)
#
# Starts `ftpcalc server` (release build) on 127.0.0.1:2121 (workers on 2122-2125) serving the
# harness's data set, starts the peers named in $PEERS (default: vsftpd pure-ftpd), runs the
# scenarios interleaved (ftpbench.py run), then cmd_rtt with the routed `SITE ADD 2 3` on
# ftpcalc next to the peers' NOOP, and writes JSON lines and a markdown table to $OUT_DIR
# (default target/bench-results). Everything is stopped on exit.
# Knobs: PEERS, REPS (3), QUICK=1 (64 MiB, 200 files, 1 s loops, 1 rep); see bench/setup.sh.
set -euo pipefail
REPS=${REPS:-3}
EXTRA=()
if [ "${QUICK:-0}" = 1 ]; then
    REPS=1
    EXTRA=(--duration 1 --login-duration 1 --idle 200 --idle-hold 1 --iperf-seconds 1)
fi
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
OUT=$OUT_DIR/compare-$stamp.jsonl

common=(--user "$FTPBENCH_USER" --password "$FTPBENCH_PASS" --data-dir "$FTPBENCH_DATA" --reps "$REPS"
        --quiet-wait "${QUIET_EACH:-10}" --quiet-budget 240 --out "$OUT" "${labels[@]}" "${EXTRA[@]}")
# The small files into the page cache: this VM's DAMON can page out what was not read for a minute,
# and the first target of the first repetition (ftpcalc) would read them from the disk (~100 us
# more per file). Scenarios that run before small_files can outlast that minute again.
cat "$FTPBENCH_DATA"/small/* > /dev/null
python3 "$HARNESS/ftpbench.py" run "${ours[@]}" "${targets[@]}" "${common[@]}" "$@" > /dev/null
python3 "$HARNESS/report.py" "$OUT" > "${OUT%.jsonl}.md"

# The routed SITE ADD on ftpcalc; the peers' NOOP is the reference it is compared with.
OUT_ADD=$OUT_DIR/compare-$stamp-site-add.jsonl
python3 "$HARNESS/ftpbench.py" run "${ours[@]}" --scenarios cmd_rtt --cmd 'SITE ADD 2 3' \
    "${common[@]/$OUT/$OUT_ADD}" > /dev/null
python3 "$HARNESS/report.py" "$OUT_ADD" > "${OUT_ADD%.jsonl}.md"
echo "results: $OUT, ${OUT%.jsonl}.md, ${OUT_ADD%.jsonl}.md"
