"""The stand-in CSI drivers leave the shared kubelet as they found it: after a clean stop, and after
a plugin that was killed (its sockets left behind), the kubelet lists neither driver, the sockets
and the CSIDriver objects are gone, and a second start converges (tests/sim/csi.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.sim.csi import StandInCsi, kubelet_dir
from tests.sim.csi_plugin import sockets
from tests.skips import unavailable

pytestmark = pytest.mark.testbed


def test_stop_unregisters_even_after_the_plugin_was_killed(testbed, cluster: str, tmp_path: Path) -> None:
    from kubernetes import client

    from tests.realcluster import api

    folder = kubelet_dir(cluster, testbed.env.get("K8S_HOME"))
    if folder is None:
        unavailable("the stand-in CSI drivers need the kit's kubelet (no data/kubelet/plugins_registry beside it)")
    storage = client.StorageV1Api(api(cluster))
    csi = StandInCsi(cluster, folder, tmp_path)
    for ending in ("stop", "kill"):
        csi.start()
        assert {"s3.csi.aws.com", "gcsfuse.csi.storage.gke.io"} <= csi.registered()
        if ending == "kill":  # no SIGTERM handler runs: the sockets stay until stop() removes them
            assert csi.proc is not None
            csi.proc.send_signal(signal.SIGKILL)
            csi.proc.wait()
            assert all(path.exists() for path in sockets(folder, "s3.csi.aws.com"))
        csi.stop()
        assert not csi.registered() & set(csi.drivers)
        assert not any(path.exists() for driver in csi.drivers for path in sockets(folder, driver))
        names = {d.metadata.name for d in storage.list_csi_driver(label_selector="cmb-testbed=stand-in-csi").items}
        assert names == set()
