#!/usr/bin/env bash
# A profile-guided (PGO) build of ftpcalc: the release build, compiled again with the branch
# and call counts of a training run, so that the compiler lays out and inlines for the paths a
# server takes (fewer instructions, hot code together).
#
#   bench/pgo.sh        (as root: the training server runs in a network namespace; ~10 min)
#
# 1. builds an instrumented binary (target/pgo/generate);
# 2. trains it: a server with its workers serving a folder made here (2,000 files of 4 KiB and
#    one of 64 MiB), driven by the same binary's bench client (small downloads, routed
#    `SITE ADD` and `NOOP` at 1 and 32 connections, an upload, a download, idle logins) and by
#    curl's listings; the server is stopped with SIGTERM, which writes its profile;
# 3. merges the profile (llvm-profdata of the compiler's own LLVM: rustup's llvm-tools) and
#    builds with it. The binary: target/pgo/use/<host>/release/ftpcalc (the path is printed).
#
# The plain `cargo build --release` stays the product's build: a profile belongs to one compiler
# version and one state of the code, so it is made here and not kept in the repository.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (the training server runs in a network namespace)" >&2; exit 1; }
command -v curl > /dev/null || { apt-get update -qq && apt-get install -y -qq curl > /dev/null; }
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
[ -x "$PROFDATA" ] || rustup component add llvm-tools
WORK=$ROOT/target/pgo
rm -rf "$WORK/profiles" "$WORK/training"
mkdir -p "$WORK/profiles" "$WORK/training/data/small" "$WORK/training/state"

echo "pgo: building the instrumented binary"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$WORK/profiles" \
    cargo build --release --quiet --target "$HOST" --target-dir "$WORK/generate" --bin ftpcalc)
BIN=$WORK/generate/$HOST/release/ftpcalc

echo "pgo: training"
DATA=$WORK/training/data
for i in $(seq 0 1999); do head -c 4096 /dev/urandom > "$DATA/small/f$(printf %04d "$i").bin"; done
head -c $((64 << 20)) /dev/urandom > "$DATA/big.bin"
ns=ftpcalc-pgo-$$
ip netns add "$ns"
pid=
finish() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap finish EXIT
ip netns exec "$ns" ip link set lo up
XDG_STATE_HOME=$WORK/training/state ip netns exec "$ns" "$BIN" server SV0 "$DATA" --listen 127.0.0.1:2121 \
    --passive-ports 40500-40999 --max-connections-per-ip 1000 \
    > "$WORK/training/console.log" 2> "$WORK/training/stderr.log" &
pid=$!
for _ in $(seq 100); do grep -q '^SV4' "$WORK/training/console.log" 2>/dev/null && break; sleep 0.1; done
bench() { ip netns exec "$ns" "$BIN" bench --server 127.0.0.1:2121 "$@" | tail -1; }
bench small small --max-files 2000 -d 30
bench small small --max-files 2000 -d 30
bench cmd --command "SITE ADD 2 3" -c 32 -d 4
bench cmd --command "SITE ADD 2 3" -c 1 -d 2
bench cmd -c 32 -d 3
bench cmd -c 1 -d 2
bench stor --mib 64
bench retr big.bin
bench idle -n 40 --concurrency 8 --hold 1
for _ in 1 2 3; do
    ip netns exec "$ns" curl -s --max-time 10 ftp://127.0.0.1:2121/small/ > /dev/null
    ip netns exec "$ns" curl -s --max-time 10 -l ftp://127.0.0.1:2121/small/ > /dev/null
done
kill -TERM "$pid"
wait "$pid" || true
pid=

echo "pgo: building with the profile"
"$PROFDATA" merge -o "$WORK/ftpcalc.profdata" "$WORK/profiles"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$WORK/ftpcalc.profdata -Cllvm-args=-no-pgo-warn-mismatch" \
    cargo build --release --quiet --target "$HOST" --target-dir "$WORK/use" --bin ftpcalc)
echo "$WORK/use/$HOST/release/ftpcalc"
