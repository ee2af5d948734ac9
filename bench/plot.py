#!/usr/bin/env python3
"""Turns ftpbench.py JSON lines (cmd_rtt at several connection counts, idle_conns at several
session counts) into curves: CSV tables, a markdown table, and PNG plots drawn by gnuplot.

    bench/plot.py --out-dir DIR FILE.jsonl...

A series is a target and a command (`ftpcalc NOOP`, `ftpcalc SITE ADD 2 3`, `vsftpd NOOP`, ...);
each point is the median over repetitions. Standard library only, plus the gnuplot program.
"""
import argparse
import json
import os
import statistics
import subprocess
from collections import defaultdict


def load(paths):
    rtt = defaultdict(lambda: defaultdict(list))   # series -> conns -> [(ops/s, p99 us)]
    idle = defaultdict(lambda: defaultdict(list))  # target -> sessions -> [(rss KiB, pss KiB)]
    meta = []
    for path in paths:
        with open(path) as lines:
            for line in lines:
                record = json.loads(line)
                scenario = record.get("scenario")
                if scenario == "meta":
                    meta.append(record)
                elif scenario == "cmd_rtt" and record.get("ok") and record.get("engine") == "epoll":
                    series = f'{record["target"]} {record["cmd"]}'
                    rtt[series][record["conns"]].append((record["ops_per_s"], record["p99_us"]))
                elif scenario == "idle_conns" and record.get("ok") and "rss_per_conn_kib" in record:
                    idle[record["target"]][record["conns"]].append(
                        (record["rss_per_conn_kib"], record["pss_per_conn_kib"]))
    return rtt, idle, meta


def median(values):
    return statistics.median(values) if values else None


def write_csv(path, header, rows):
    with open(path, "w") as out:
        out.write(",".join(header) + "\n")
        for row in rows:
            out.write(",".join("" if value is None else str(value) for value in row) + "\n")


def gnuplot(script, cwd):
    subprocess.run(["gnuplot"], input=script, text=True, cwd=cwd, check=True)


def csv_rows(path):
    """The rows of a small CSV file after its header, as tuples of strings."""
    with open(path) as lines:
        return [tuple(line.strip().split(",")) for line in lines.readlines()[1:] if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--fresh-idle", help="CSV sessions,kib_per_session: ftpcalc on a fresh server per level")
    parser.add_argument("--spread-idle",
                        help="CSV sessions,kib_per_session,processes: ftpcalc over several fresh servers")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    rtt, idle, meta = load(args.files)
    series = sorted(rtt)
    levels = sorted({conns for points in rtt.values() for conns in points})
    rows = []
    for conns in levels:
        row = [conns]
        for name in series:
            points = rtt[name].get(conns, [])
            row += [median([p[0] for p in points]), median([p[1] for p in points])]
        rows.append(row)
    header = ["conns"] + [f"{name} {what}" for name in series for what in ("ops/s", "p99 us")]
    write_csv(os.path.join(args.out_dir, "cmd_rtt.csv"), header, rows)

    sessions = sorted({n for points in idle.values() for n in points})
    targets = sorted(idle)
    idle_rows = []
    for n in sessions:
        row = [n]
        for target in targets:
            points = idle[target].get(n, [])
            row += [median([p[0] for p in points]), median([p[1] for p in points])]
        idle_rows.append(row)
    idle_header = ["sessions"] + [f"{target} {what}" for target in targets for what in ("RSS KiB", "PSS KiB")]
    write_csv(os.path.join(args.out_dir, "idle.csv"), idle_header, idle_rows)
    fresh = []
    if args.fresh_idle:
        fresh = csv_rows(args.fresh_idle)
        write_csv(os.path.join(args.out_dir, "idle-fresh.csv"), ["sessions", "ftpcalc KiB per session"], fresh)
    spread = []
    if args.spread_idle:
        spread = csv_rows(args.spread_idle)
        write_csv(os.path.join(args.out_dir, "idle-spread.csv"),
                  ["sessions", "ftpcalc KiB per session", "processes"], spread)

    with open(os.path.join(args.out_dir, "README.md"), "w") as out:
        out.write("# Curves\n\n")
        for record in meta[:1]:
            out.write(f'Run `{record.get("run_id", "?")}`; ' + "; ".join(
                f"{key}: {value}" for key, value in record.items() if key in ("host", "cpu", "kernel")) + "\n\n")
        out.write("| connections | " + " | ".join(f"{name} ops/s (p99 µs)" for name in series) + " |\n")
        out.write("|---" * (len(series) + 1) + "|\n")
        for row in rows:
            cells = []
            for index in range(len(series)):
                ops, p99 = row[1 + 2 * index], row[2 + 2 * index]
                cells.append("n/a" if ops is None else f"{ops:,.0f} ({p99:,.0f})")
            out.write(f"| {row[0]} | " + " | ".join(cells) + " |\n")
        out.write("\n| idle sessions | " + " | ".join(f"{t} RSS / PSS KiB per session" for t in targets) + " |\n")
        out.write("|---" * (len(targets) + 1) + "|\n")
        for row in idle_rows:
            cells = []
            for index in range(len(targets)):
                rss, pss = row[1 + 2 * index], row[2 + 2 * index]
                cells.append("n/a" if rss is None else f"{rss:,.1f} / {pss:,.1f}")
            out.write(f"| {row[0]:,} | " + " | ".join(cells) + " |\n")
        if fresh:
            out.write("\nftpcalc on a fresh server for each level (`ftpcalc bench idle`, RSS growth per session):\n\n")
            out.write("| idle sessions | KiB per session |\n|---|---|\n")
            for sessions, kib in fresh:
                out.write(f"| {int(sessions):,} | {kib} |\n")
            for sessions, kib, processes in spread:
                out.write(f"| {int(sessions):,} over {processes} processes (`bench/idle-spread.sh`) | {kib} |\n")
        out.write("\n![ops/s](ops.png) ![p99](p99.png) ![memory](idle.png)\n")

    def plot(output, title, ylabel, column_of, names, data, xlabel, logy=False):
        plots = ", ".join(
            f"'{data}' using 1:{column_of(index)} with linespoints lw 2 title '{name}'"
            for index, name in enumerate(names))
        gnuplot(
            "set datafile separator ','\n"
            "set terminal png size 800,480 noenhanced\n"
            f"set output '{output}'\n"
            f"set title '{title}'\nset xlabel '{xlabel}'\nset ylabel '{ylabel}'\n"
            "set logscale x 2\n" + ("set logscale y 10\n" if logy else "") +
            "set key left top\nset grid\n"
            f"plot {plots}\n", args.out_dir)

    plot("ops.png", "Command round trips", "ops/s", lambda i: 2 + 2 * i, series, "cmd_rtt.csv", "connections")
    plot("p99.png", "Command latency, 99th percentile", "p99 (us)", lambda i: 3 + 2 * i, series,
         "cmd_rtt.csv", "connections", logy=True)
    # Memory: the peers' PSS from the harness (their sessions are processes that share pages;
    # PSS is the fair share), ftpcalc's RSS growth on fresh servers (one process).
    plots = [f"'idle.csv' using 1:{3 + 2 * index} with linespoints lw 2 title '{target} (PSS, harness)'"
             for index, target in enumerate(targets) if target != "ftpcalc"]
    if fresh:
        plots.append("'idle-fresh.csv' using 1:2 with linespoints lw 2 title 'ftpcalc (RSS, fresh server)'")
    if spread:
        plots.append("'idle-spread.csv' using 1:2 with points pt 7 ps 2 "
                     "title 'ftpcalc (RSS, fresh servers, sessions spread over several)'")
    gnuplot(
        "set datafile separator ','\n"
        "set terminal png size 800,480 noenhanced\n"
        "set output 'idle.png'\n"
        "set title 'Memory per idle logged-in session'\nset xlabel 'sessions'\n"
        "set ylabel 'KiB per session (log)'\nset logscale x 2\nset logscale y 10\n"
        "set key right center\nset grid\n"
        f"plot {', '.join(plots)}\n", args.out_dir)
    print(os.path.join(args.out_dir, "README.md"))


if __name__ == "__main__":
    main()
