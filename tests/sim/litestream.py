"""A stand-in for the Litestream image (docker.io/litestream/litestream), for deploys on the real cluster.

The kubelet cannot pull Docker Hub offline, and pods have no route to the network edge (nor a metadata
server for Workload Identity), so the real Litestream could reach no replica bucket. The stand-in keeps
the chart's two uses of the image: `restore ... -if-replica-exists` exits 0 as Litestream does when there
is no replica (a first install), and `replicate` runs until SIGTERM, as the native sidecar must.
Not imitated: any replication or restore (nothing reaches the bucket; README, "Not verifiable offline"),
Litestream's config checks. FROM scratch with the static busybox, as the stand-in apps
(tests/fixtures/apps); nothing is pulled.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.apps import BUSYBOX

SCRIPT = """\
case "$1" in
  restore) echo "litestream stand-in: restore: no replica reachable from the test bed, nothing restored"; exit 0 ;;
  replicate) echo "litestream stand-in: replicate: waiting for SIGTERM"
             trap 'kill $pid; exit 0' TERM; /bin/busybox sleep 2147483647 & pid=$!; wait $pid ;;
  *) echo "litestream stand-in: $1 is not imitated" >&2; exit 2 ;;
esac
"""


def stand_in_context(folder: Path) -> Path:
    """A build context of the stand-in under `folder`."""
    context = folder / "litestream-stand-in"
    context.mkdir(parents=True)
    shutil.copy2(BUSYBOX, context / "busybox")
    (context / "litestream.sh").write_text(SCRIPT)
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCOPY litestream.sh /litestream.sh\n"
        'USER 1000:1000\nENTRYPOINT ["/bin/busybox", "sh", "/litestream.sh"]\n'
    )
    return context
