"""A Kubernetes API emulator (kmock) on 127.0.0.1, for the `kubernetes` client and helm.

Run: python tests/kmock_server.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

import attrs
import kmock


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    async def _serve_version(self, request):  # type: ignore[no-untyped-def]
        # kmock 0.8 says groupVersion "/v1" for the core group; client-go needs "v1".
        doc = await super()._serve_version(request)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
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
