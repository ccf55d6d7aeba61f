#!/usr/bin/env python3
"""Capture creations acknowledged per second by a running topotap.

usage: capture_acks.py ADDR COUNT CLIENTS TAG

POSTs COUNT captures to http://ADDR/api/capture from CLIENTS threads (one HTTP/1.1
connection each) and prints `acks/s`. Every query matches nothing (`Has('Name', ...)`
of a name no node has), so no capture is placed. Any answer but 201 is an error.
"""
import http.client
import json
import sys
import threading
import time

addr, count, clients, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
lock = threading.Lock()
next_i = [0]
errors = []


def worker():
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    while True:
        with lock:
            i = next_i[0]
            if i >= count:
                break
            next_i[0] += 1
        body = json.dumps({"GremlinQuery": f"G.V().Has('Name', 'bench-{tag}-{i}')"})
        conn.request("POST", "/api/capture", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        if resp.status != 201:
            errors.append(f"{resp.status} {text[:200]!r}")
            break


start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
if errors:
    sys.exit(f"errors: {errors[:3]}")
print(f"{count / elapsed:.1f}")
