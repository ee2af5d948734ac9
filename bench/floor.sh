#!/usr/bin/env bash
# The floor of the small-file row: how fast the least possible tokio server (bench/floor: one
# task per session, no channels, locks or logs, the same system calls per download) is on this
# machine, against pure-ftpd and against ftpcalc, in paired runs (bench/pair.sh: a fresh server
# in a fresh network namespace per run, the harness's client, 2,000 x 4 KiB RETR).
#
#   bench/floor.sh [PAIRS]     (as root; default 8 pairs per comparison; about a minute per 16 pairs)
#
# Then the floor in the harness itself (it stands in the "ftpcalc" column; ~1 min a run):
#   FTPCALC_BIN=target/floor/release/ftpcalc-floor PEERS=pure-ftpd REPS=3 \
#       bash bench/compare.sh --scenarios small_files
# Needs the harness's data set and peers (bench/compare.sh prepares both) and a release build.
set -euo pipefail
PAIRS=${1:-8}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml"
cargo build --quiet --release --manifest-path "$ROOT/bench/floor/Cargo.toml" --target-dir "$ROOT/target/floor"
FLOOR=$ROOT/target/floor/release/ftpcalc-floor
OURS=$ROOT/target/release/ftpcalc
echo "== A: the floor, B: pure-ftpd"
bash "$ROOT/bench/pair.sh" "$FLOOR" pure-ftpd "$PAIRS" | tail -3
echo "== A: ftpcalc, B: the floor"
bash "$ROOT/bench/pair.sh" "$OURS" "$FLOOR" "$PAIRS" | tail -3
