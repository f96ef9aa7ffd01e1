"""Drives AcoustID's unchanged HTTP client (fpindex_client.py) against BASE_URL: index
creation, existence and deletion, as AcoustID's updater does them. Prints one JSON line.

Usage: create_index.py BASE_URL
"""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fpindex_client import FingerprintIndexClient, FingerprintIndexClientError  # noqa: E402


async def main():
    report = {}
    async with FingerprintIndexClient(sys.argv[1]) as client:
        report["exists_before"] = await client.index_exists("acoustid")
        for attempt in ("create", "create_again"):
            try:
                await client.create_index("acoustid")
                report[attempt] = "ok"
            except FingerprintIndexClientError as error:
                report[attempt] = str(error)
        report["exists_after"] = await client.index_exists("acoustid")
        await client.delete_index("acoustid")
        report["exists_after_delete"] = await client.index_exists("acoustid")
    print(json.dumps(report, sort_keys=True))


asyncio.run(main())
