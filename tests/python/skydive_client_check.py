"""Drives topotap with the official Python client, skydive-client, unchanged.

Usage: skydive_client_check.py ENDPOINT [USERNAME PASSWORD]

Prints one JSON object: what the client could do, or the error it got.
"""

import json
import sys
import urllib.error

from skydive.rest.client import BadRequest, RESTClient


def main():
    endpoint = sys.argv[1]
    username, password = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("", "")
    client = RESTClient(endpoint, scheme="http", username=username, password=password)
    out = {}
    try:
        node = client.node_create(
            "skydive-client-node", host="python",
            metadata={"Name": "skydive-client-node", "Type": "device"},
        )
        out["node"] = node.id
        nodes = client.lookup_nodes("G.V().Has('Name', 'skydive-client-node')")
        out["nodes"] = [n.metadata.get("Name") for n in nodes]
        capture = client.capture_create(
            "G.V().Has('Name', 'skydive-client-node')", name="from-python"
        )
        out["created"] = capture.uuid
        out["listed"] = [c.uuid for c in client.capture_list() if c.name == "from-python"]
        client.capture_delete(capture.uuid)
        out["after_delete"] = [c.uuid for c in client.capture_list()]
        client.node_delete(node.id)
        out["nodes_after_delete"] = [n.id for n in client.node_list()]
    except BadRequest as e:
        # A refused API call: the server's answer.
        body = e.args[0]
        out["error"] = body.decode() if isinstance(body, bytes) else str(body)
    except urllib.error.HTTPError as e:
        # A refused POST /login: the client lets urllib's error through.
        out["login_error"] = {"status": e.code, "body": e.read().decode()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
