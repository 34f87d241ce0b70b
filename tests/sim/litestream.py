"""A stand-in for `docker.io/litestream/litestream`, the chart's database backup, for a whole deploy on the simulation.

The kubelet cannot pull Docker Hub offline, and a pod cannot reach the test bed's S3 (moto listens on the host's
loopback; nothing routes from the pod network to the network edge), so the real Litestream in the chart's
restore container and sidecar would stop at the replica's URL. The stand-in is a static busybox (as the stand-in
apps, tests/fixtures/apps) that reads the configuration the chart mounts and:

- `restore ... -if-replica-exists`: prints the replica URL of its configuration and exits 0, Litestream's answer
  when no replica exists yet (a first install);
- `replicate`: prints the replica URL and waits until SIGTERM (the native sidecar's life).

Not imitated: any replication or restore (no byte reaches the bucket), Litestream's checks of the configuration
beyond the replica's URL being there, and its S3 credentials (IRSA). The database's backup and restore with the
real binary are tests/test_cluster_database.py's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.apps import BUSYBOX
from tests.realcluster import build_and_push

SCRIPT = """\
config=""
prev=""
for arg in "$@"; do [ "$prev" = "-config" ] && config="$arg"; prev="$arg"; done
replica=$(/bin/busybox grep -m1 'url:' "$config" | /bin/busybox sed 's/.*url: *//')
[ -n "$replica" ] || { echo "stand-in litestream: no replica url in $config" >&2; exit 3; }
case "$1" in
  restore) echo "stand-in litestream: no replica at $replica yet (first install): nothing restored"; exit 0 ;;
  replicate)
    echo "stand-in litestream: replicating to $replica (not imitated: nothing is sent)"
    trap 'exit 0' TERM
    while :; do /bin/busybox sleep 3600 & wait $!; done ;;
  *) echo "stand-in litestream: $1 is not imitated" >&2; exit 2 ;;
esac
"""


def stand_in_litestream(folder: Path, env: dict[str, str], registry: str) -> str:
    """Build the stand-in with a test bed engine (`env`: its DOCKER_HOST), push it to the loopback `registry`;
    its reference by digest, for LITESTREAM_IMAGE."""
    context = folder / "litestream-stand-in"
    context.mkdir(parents=True)
    shutil.copy2(BUSYBOX, context / "busybox")
    (context / "litestream.sh").write_text(SCRIPT)
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY litestream.sh /litestream.sh\nUSER 1000:1000\n"
        'ENTRYPOINT ["/bin/busybox", "sh", "/litestream.sh"]\n'
    )
    repository = f"{registry}/cmbsim-litestream"
    digest = build_and_push(env, context, f"{repository}:stand-in")
    return f"{repository}:stand-in@{digest}"
