"""A stand-in for the ingress controller's one write the toolkit reads: the Ingress's load-balancer address.

The kit has no ingress controller. ingress-nginx, run with `--publish-service`, writes the address of its
LoadBalancer Service into the `status.loadBalancer.ingress` of each Ingress of its class
(https://kubernetes.github.io/ingress-nginx/user-guide/cli-arguments/, `--publish-service`;
https://kubernetes.io/docs/concepts/services-networking/ingress/, "status"); `make dns` waits for it.
While the block runs, each Ingress of `class_name` in `namespace` without an address gets `address`
(an IP of TEST-NET-3, RFC 5737), written as the cluster admin through the status subresource.
Not imitated: the load balancer itself, routing, TLS; nothing answers at the address.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from tests.realcluster import api

ADDRESS = "203.0.113.10"


@contextlib.contextmanager
def publishing(kubeconfig: str, namespace: str, class_name: str = "nginx", address: str = ADDRESS) -> Iterator[None]:
    from kubernetes import client

    networking = client.NetworkingV1Api(api(kubeconfig))
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(client.ApiException):
                for ingress in networking.list_namespaced_ingress(namespace).items:
                    if ingress.spec.ingress_class_name != class_name:
                        continue
                    if (ingress.status.load_balancer.ingress or []) == []:
                        status = {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}}
                        networking.patch_namespaced_ingress_status(ingress.metadata.name, namespace, status)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
