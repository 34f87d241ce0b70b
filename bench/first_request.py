"""Run a tool and note when it first opens a connection (to anything: registry, cluster, Docker).

    python -m bench.first_request OUTFILE START tools.STEP ARGS...

START is the wall-clock time (time.time()) the caller took just before starting this process;
OUTFILE gets the seconds from START to the first `connect()`. A benchmark instrument only: the
tools know nothing of it.
"""

from __future__ import annotations

import runpy
import socket
import sys
import time


def main() -> None:
    outfile, start, module, *args = sys.argv[1:]
    connect = socket.socket.connect

    def first_connect(self: socket.socket, address: object) -> None:
        socket.socket.connect = connect  # type: ignore[method-assign]
        with open(outfile, "w", encoding="utf-8") as out:
            out.write(f"{time.time() - float(start):.3f}")
        return connect(self, address)

    socket.socket.connect = first_connect  # type: ignore[method-assign]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
