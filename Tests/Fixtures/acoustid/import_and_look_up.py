"""Drives AcoustID's unchanged indexclient.py against a legacy port; prints one JSON line.

Usage: import_and_look_up.py PORT [INSERTS]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from indexclient import IndexClient, IndexClientError  # noqa: E402


def hashes(fingerprint_id):
    # Signed 32-bit values, as AcoustID's database hands them to the client.
    values = []
    for n in range(60):
        value = (fingerprint_id * 2654435761 + n * 40503) & 0xFFFFFFFF
        values.append(value - (1 << 32) if value >= 1 << 31 else value)
    return values


def main():
    port = int(sys.argv[1])
    inserts = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    client = IndexClient(port=port, timeout=60)
    report = {"ping": client.ping(), "before": client.get_attribute("max_document_id")}
    client.begin()
    for fingerprint_id in range(1, inserts + 1):
        client.insert(fingerprint_id, hashes(fingerprint_id))
    client.set_attribute("max_document_id", str(inserts))
    client.commit()
    report["after"] = client.get_attribute("max_document_id")
    report["searches"] = {
        str(fingerprint_id): [list(result) for result in client.search(hashes(fingerprint_id))]
        for fingerprint_id in (1, inserts // 2, inserts)
    }
    try:
        client.insert(1, [1])
        report["insert_outside_transaction"] = "accepted"
    except IndexClientError as error:
        report["insert_outside_transaction"] = str(error)
    client.close()
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
