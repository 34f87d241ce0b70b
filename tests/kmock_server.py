"""A Kubernetes API emulator (kmock) on 127.0.0.1, for the `kubernetes` client and helm.

Run: python tests/kmock_server.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

import attrs
import kmock
from kmock._internal import parsing

KUBERNETES_VERSION = ("1", "33", "v1.33.0")  # kmock says 1.26; the chart needs >= 1.27
_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads /api/v1/namespaces[/NAME] as a namespace prefix: make Namespaces objects again."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 5 and (len(parts) != 5 or parts[4] == "status"):
        name = parts[3] if len(parts) > 3 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, parts[4] if len(parts) == 5 else None)
    return _parse_path(path)


parsing.parse_path = parse_path


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    async def _serve_version(self, request):  # type: ignore[no-untyped-def]
        # kmock 0.8 says groupVersion "/v1" for the core group; client-go needs "v1".
        doc = await super()._serve_version(request)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
        return doc

    async def _serve_server_version(self, request):  # type: ignore[no-untyped-def]
        doc = await super()._serve_server_version(request)
        doc["major"], doc["minor"], doc["gitVersion"] = KUBERNETES_VERSION
        return doc


async def main(port: int) -> None:
    async with Emulator() as k8s, kmock.Server(k8s, host="127.0.0.1", port=port):
        k8s.resources.load_bundled()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
