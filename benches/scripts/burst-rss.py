#!/usr/bin/env python3
"""What connections that sent one large frame and then went quiet hold in the
server: starts the given server binary (port 0, a temporary data directory), opens
N connections that each send HELLO and a REGISTER whose payload is SIZE bytes
(refused as too long a password, but read and decoded like any payload), reads
their replies, waits 2 s (past the 1 s after which a quiet connection's large
receive buffer is let go of), and prints the server's RSS growth per connection
(BENCHMARKS.md,
"A large receive buffer let go of"). To measure what connections hold rather than
what glibc keeps for later, run it with MALLOC_MMAP_THRESHOLD_=16384
MALLOC_TRIM_THRESHOLD_=0 in the environment (the server inherits it). Usage:

    python3 benches/scripts/burst-rss.py target/release/baatkaro-server 500 200000
"""
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main():
    binary, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    work = tempfile.mkdtemp()
    log = open(f"{work}/log", "w+")
    server = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--no-web", "--insecure-test-hash",
         "--data-dir", f"{work}/data", "--max-per-address", "100000",
         "--max-connections", "100000", "--limit-login", "120",
         "--logins-per-minute", "1000000"],
        stderr=log)
    try:
        # The server says where it listens; at most 20 s.
        addr = None
        for _ in range(200):
            log.seek(0)
            found = re.search(r"listening on (\S+)", log.read())
            if found:
                addr = found.group(1)
                break
            time.sleep(0.1)
        host, port = addr.rsplit(":", 1)
        base = rss(server.pid)
        frame = (b"h HELLO 1\r\n" + b"r REGISTER u {%d}\r\n" % size
                 + b"x" * size + b"\r\n")
        conns = []
        for _ in range(n):
            s = socket.create_connection((host, int(port)))
            s.sendall(frame)
            conns.append(s)
        # Each connection's two replies (HELLO's and the refusal), so that nothing
        # stays queued for it.
        for s in conns:
            s.settimeout(20)
            got = b""
            while got.count(b"\r\n") < 2:
                got += s.recv(65536)
        time.sleep(2)
        after = rss(server.pid)
        print(f"{binary}: {n} connections after a {size}-byte frame each: RSS "
              f"{base / 1e6:.1f} -> {after / 1e6:.1f} MB, {(after - base) / n:.0f} B a connection")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
