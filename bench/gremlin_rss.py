#!/usr/bin/env python3
"""Resident memory of topotap over a seeded stream of Gremlin-only requests.

usage: gremlin_rss.py BINARY [--requests N] [--seed S] [--every K] [--clients C]
                      [--env NAME=VALUE ...] [--heaptrack]

Starts `BINARY allinone --no-probes` on a free loopback port with a fresh state dir,
fills the graph with ~350 KB of nodes and edges (GET /api/topology size is printed),
then POSTs N random Gremlin queries to /api/topology from C client threads: valid ones
(traversals, predicates, Regex, Sort, ShortestPathTo, SubGraph...) and invalid ones
(unknown steps, bad arity, unclosed strings, bad numbers, bad regexes, random bytes).
Prints VmRSS every K requests, the status counts, and exits non-zero on any 5xx other
than 503 (the query time budget) or on a crash.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

STEPS = ["Out", "In", "Both", "OutE", "InE", "BothE", "OutV", "InV", "BothV", "Dedup"]
KEYS = ["Name", "Type", "MTU", "State", "IPV4", "Driver", "Index", "Labels", "Blob"]
TYPES = ["veth", "bridge", "netns", "host", "device", "ovsport"]


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


def rss_line(pid):
    """VmRSS, and its anonymous part (the heap) apart from mapped files (code)."""
    return (f"RSS {status_kb(pid, 'VmRSS'):>7} kB (anon {status_kb(pid, 'RssAnon'):>7} kB, "
            f"file {status_kb(pid, 'RssFile'):>6} kB, threads {status_kb(pid, 'Threads')}, "
            f"fds {len(os.listdir(f'/proc/{pid}/fd'))})")


def rand_string(rng):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.*[]()\\'\"é漢 "
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))


def rand_value(rng):
    r = rng.random()
    if r < 0.3:
        return "'%s'" % rng.choice(TYPES + ["eth0", "lo", "UP", "DOWN"])
    if r < 0.5:
        return str(rng.choice([0, 1, 1500, 9000, -3, 2**40]))
    if r < 0.6:
        return "Regex('%s')" % rng.choice(
            [".*", "veth.*", "n[0-9]+", "(a|b)*c", "x{1,40}", "^n1.*$", "[[:alpha:]]+"]
        )
    if r < 0.7:
        return "%s(%d)" % (rng.choice(["Lt", "Gt", "Lte", "Gte", "Ne"]), rng.randint(0, 2000))
    if r < 0.8:
        return "Within(%s)" % ",".join("'n%d'" % rng.randint(0, 300) for _ in range(rng.randint(1, 5)))
    if r < 0.85:
        return "Inside(%d, %d)" % (rng.randint(0, 100), rng.randint(100, 3000))
    if r < 0.9:
        return "IPV4RANGE('10.%d.0.0/16')" % rng.randint(0, 255)
    return "'%s'" % rand_string(rng).replace("'", "").replace("\\", "")


def valid_query(rng):
    q = rng.choice(["G.V()", "G.E()", "g.V()", "G.V('n%d')" % rng.randint(0, 300)])
    for _ in range(rng.randint(0, 6)):
        r = rng.random()
        if r < 0.35:
            q += ".%s()" % rng.choice(STEPS)
        elif r < 0.6:
            q += ".Has('%s', %s)" % (rng.choice(KEYS), rand_value(rng))
        elif r < 0.65:
            q += ".HasKey('%s')" % rng.choice(KEYS)
        elif r < 0.7:
            q += ".HasNot('%s')" % rng.choice(KEYS)
        elif r < 0.75:
            q += ".Limit(%d)" % rng.randint(0, 50)
        elif r < 0.8:
            q += ".Range(%d, %d)" % (rng.randint(0, 10), rng.randint(10, 60))
        elif r < 0.85:
            q += ".Sort(%s'%s')" % (rng.choice(["", "DESC, ", "ASC, "]), rng.choice(KEYS))
        elif r < 0.88:
            q += ".ShortestPathTo(Metadata('Name', 'n%d'))" % rng.randint(0, 300)
        elif r < 0.9:
            q += ".As('a').Out().Select('a')"
        else:
            q += ".Dedup()"
    tail = rng.random()
    if tail < 0.15:
        q += ".Count()"
    elif tail < 0.25:
        q += ".Values('%s')" % rng.choice(KEYS)
    elif tail < 0.3:
        q += ".Keys()"
    elif tail < 0.35:
        q += ".ValueMap()"
    elif tail < 0.4:
        q += ".SubGraph()"
    elif tail < 0.43:
        q += ".Values('MTU').Sum()"
    return q


def invalid_query(rng):
    base = valid_query(rng)
    r = rng.random()
    if r < 0.15:
        return base + ".%s()" % rng.choice(["Nope", "Bogus", "Outt", "Has_", "X%d" % rng.randint(0, 10**6)])
    if r < 0.3:
        cut = rng.randint(0, len(base))
        return base[:cut]
    if r < 0.4:
        return base + ".Has('Name', Regex('%s'))" % rng.choice(["(", "[a-", "*x", "\\\\p{Nope}", "a{99999}"])
    if r < 0.5:
        return base + ".Limit(%s)" % rng.choice(["-1", "1.2.3", "10s", "'x'", "", "1e400"])
    if r < 0.6:
        return base + ".Has(" + "(" * rng.randint(1, 200)
    if r < 0.7:
        return "G.V()" + ".Out(" * rng.randint(1, 300)
    if r < 0.8:
        i = rng.randint(0, max(0, len(base) - 1))
        return base[:i] + chr(rng.randint(1, 0x7FF)) + base[i + 1:]
    if r < 0.9:
        return "".join(chr(rng.randint(1, 0xFFFF)) for _ in range(rng.randint(1, 200)))
    return base + ".Has('%s')" % ("x" * rng.randint(1000, 60000))


def request(conn_box, addr, body):
    for attempt in range(2):
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(*addr, timeout=60)
        conn = conn_box[0]
        try:
            conn.request("POST", "/api/topology", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn_box[0] = None
            return resp.status, data
        except (ConnectionError, http.client.HTTPException, OSError):
            conn.close()
            conn_box[0] = None
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def http_json(addr, method, path, obj=None):
    conn = http.client.HTTPConnection(*addr, timeout=30)
    body = None if obj is None else json.dumps(obj)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def populate(addr, rng):
    """~350 KB of graph: 300 nodes of ~1 KB of metadata, a tree of edges plus links."""
    for i in range(300):
        md = {
            "Name": "n%d" % i,
            "Type": rng.choice(TYPES[:2] + TYPES[3:5]),
            "MTU": rng.choice([1500, 9000, 65536]),
            "State": rng.choice(["UP", "DOWN"]),
            "IPV4": ["10.%d.%d.%d/24" % (i % 250, rng.randint(0, 255), rng.randint(1, 254))],
            "Driver": rng.choice(["veth", "bridge", "openvswitch"]),
            "Index": i,
            "Labels": {"k%d" % j: "v%d" % rng.randint(0, 99) for j in range(8)},
            "Blob": "b" * 550,
        }
        if md["Type"] == "netns":
            md["Path"] = "/var/run/netns/n%d" % i
        s, d = http_json(addr, "POST", "/api/node", {"ID": "n%d" % i, "Metadata": md})
        assert s == 201, (s, d)
    for i in range(1, 300):
        parent = (i - 1) // 3
        s, d = http_json(addr, "POST", "/api/edge", {
            "ID": "o%d" % i, "Parent": "n%d" % parent, "Child": "n%d" % i,
            "Metadata": {"RelationType": "ownership"}})
        assert s == 201, (s, d)
    for i in range(150):
        a, b = rng.randint(0, 299), rng.randint(0, 299)
        s, d = http_json(addr, "POST", "/api/edge", {
            "ID": "l%d" % i, "Parent": "n%d" % a, "Child": "n%d" % b,
            "Metadata": {"RelationType": "layer2"}})
        assert s == 201, (s, d)
    s, d = http_json(addr, "GET", "/api/topology")
    assert s == 200, s
    return len(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--heaptrack", metavar="OUT", help="run under heaptrack, output prefix OUT")
    args = ap.parse_args()

    state = tempfile.mkdtemp(prefix="topotap-rss-")
    env = dict(os.environ, TOPOTAP_LOG="warn")
    for kv in args.env:
        k, v = kv.split("=", 1)
        env[k] = v
    cmd = [args.binary, "allinone", "--no-probes", "--listen", "127.0.0.1:0",
           "--host-id", "rss-bench", "--state-dir", state]
    if args.heaptrack:
        cmd = ["heaptrack", "-o", args.heaptrack] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        while not line.startswith("listening on http://"):
            if not line:
                raise SystemExit("topotap exited before listening")
            line = proc.stdout.readline()
        host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
        addr = (host, int(port))
        pid = proc.pid
        if args.heaptrack:
            # heaptrack runs the binary as its child.
            out = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "allinone"],
                                 capture_output=True, text=True).stdout.split()
            pid = int(out[0]) if out else proc.pid
        rng = random.Random(args.seed)
        rss_start = rss_kb(pid)
        size = populate(addr, rng)
        print(f"graph: GET /api/topology = {size} bytes; at start RSS {rss_start} kB; "
              f"before queries {rss_line(pid)}", flush=True)

        queries = []
        for _ in range(args.requests):
            q = valid_query(rng) if rng.random() < 0.6 else invalid_query(rng)
            queries.append(json.dumps({"GremlinQuery": q}))
        counts = {}
        lock = threading.Lock()
        next_i = [0]
        samples = []

        def worker():
            box = [None]
            while True:
                with lock:
                    i = next_i[0]
                    if i >= len(queries):
                        return
                    next_i[0] += 1
                status, _ = request(box, addr, queries[i])
                with lock:
                    counts[status] = counts.get(status, 0) + 1
                    done = sum(counts.values())
                    if done % args.every == 0:
                        samples.append((done, rss_kb(pid)))
                        print(f"{done:>7} requests  {rss_line(pid)}", flush=True)

        t0 = time.time()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - t0
        time.sleep(1)
        rss_end = rss_kb(pid)
        print(f"statuses: {dict(sorted(counts.items()))} in {took:.1f} s")
        print(f"RSS: {samples[0][1] if samples else 0} kB after {args.every} requests, "
              f"{rss_end} kB at the end (1 s idle); {rss_line(pid)}")
        bad = {s: n for s, n in counts.items() if s >= 500 and s != 503}
        if proc.poll() is not None:
            raise SystemExit(f"topotap died: exit {proc.returncode}")
        if bad:
            raise SystemExit(f"unexpected 5xx: {bad}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
