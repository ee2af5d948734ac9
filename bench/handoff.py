"""Helpers of bench/handoff.sh.

    handoff.py client HARNESS PORT   2,000 small downloads, timed phase by phase (medians, us)
    handoff.py analyse SERVER_COMM   reads `perf script -F comm,tid,cpu,time,event,trace` of a
                                     `perf sched record` and prints the hand-off medians (us)
"""
import re
import socket
import statistics
import sys
import time

DOWNLOADS = 2000


def client(harness, port):
    sys.path.insert(0, harness)
    import ftpbench

    session = ftpbench.SyncFtp("127.0.0.1", port, epsv=False)
    session.login("ftpbench", "ftpbench")
    session.cmd("TYPE I", "2")
    phases = {name: [] for name in ("pasv", "connect", "retr_150", "data", "226", "download")}
    for index in range(DOWNLOADS):
        start = time.perf_counter()
        _, text = session.cmd("PASV", "2")
        entered = time.perf_counter()
        numbers = text[text.index("(") + 1 : text.index(")")].split(",")
        data = socket.create_connection(("127.0.0.1", int(numbers[4]) * 256 + int(numbers[5])))
        connected = time.perf_counter()
        session.cmd(f"RETR small/f{index:04d}.bin", "1")
        opened = time.perf_counter()
        received = 0
        while chunk := data.recv(262144):
            received += len(chunk)
        data.close()
        read = time.perf_counter()
        code, _ = session.reply()
        done = time.perf_counter()
        if received != 4096 or not 200 <= int(code) < 300:
            raise SystemExit(f"download {index}: {received} bytes, reply {code}")
        for name, begin, end in (
            ("pasv", start, entered),
            ("connect", entered, connected),
            ("retr_150", connected, opened),
            ("data", opened, read),
            ("226", read, done),
            ("download", start, done),
        ):
            phases[name].append((end - begin) * 1e6)
    session.quit()
    print(" ".join(f"{statistics.median(values):.0f}" for values in phases.values()))


EVENT = re.compile(r"\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")


def analyse(server):
    """Hand-offs between the client (python3) and the server's thread (comm prefix `server`)."""
    response, delay, turn = [], [], []
    d_sleeps = 0
    woken_at = None  # when the client last woke the server
    woken_pid = None  # the server's thread it woke
    switched_in = None  # when the server then came on a CPU (None: it was running already)
    answered = True  # the server has woken the client since
    last_answer = None  # when the server last woke the client
    for line in sys.stdin:
        match = EVENT.match(line)
        if not match:
            continue
        comm, _, _, at, kind, rest = match.groups()
        at = float(at) * 1e6
        if kind == "sched_waking" and comm.startswith("python") and f"comm={server}" in rest:
            woken_at, switched_in, answered = at, None, False
            woken_pid = re.search(r" pid=(\d+)", rest).group(1)
            if last_answer is not None:
                turn.append(at - last_answer)
        elif kind == "sched_switch" and f"next_pid={woken_pid} " in rest and not answered and switched_in is None:
            switched_in = at
        elif kind == "sched_waking" and comm.startswith(server) and "comm=python" in rest:
            if not answered and woken_at is not None:
                response.append(at - woken_at)
                # The delay counts only when the server slept until then (it came on a CPU
                # between the client's wake and its answer).
                if switched_in is not None:
                    delay.append(switched_in - woken_at)
                answered = True
            last_answer = at
        if kind == "sched_switch" and f"prev_comm={server}" in rest and "prev_state=D" in rest:
            d_sleeps += 1
    median = lambda values: f"{statistics.median(values):.0f}" if values else "-"
    print(f"| {median(response)} {median(delay)} {median(turn)} {d_sleeps}")


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]))
    else:
        analyse(sys.argv[2])
