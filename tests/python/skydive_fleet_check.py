"""Drives a fleet analyzer with the official Python client, skydive-client, unchanged.

Usage: skydive_fleet_check.py ENDPOINT GREMLIN

Prints one JSON object: the host nodes of the merged graph, the hosts of the nodes
GREMLIN finds, and the capture it created on them (left in place), or the error it got.
"""

import json
import sys

from skydive.rest.client import BadRequest, RESTClient


def main():
    endpoint, gremlin = sys.argv[1], sys.argv[2]
    client = RESTClient(endpoint, scheme="http")
    out = {}
    try:
        hosts = client.lookup_nodes("G.V().Has('Type', 'host')")
        out["hosts"] = sorted(n.metadata.get("Name") for n in hosts)
        out["found"] = sorted(n.host for n in client.lookup_nodes(gremlin))
        capture = client.capture_create(gremlin, name="fleet-python")
        out["created"] = capture.uuid
        out["listed"] = [c.uuid for c in client.capture_list() if c.name == "fleet-python"]
    except BadRequest as e:
        body = e.args[0]
        out["error"] = body.decode() if isinstance(body, bytes) else str(body)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
