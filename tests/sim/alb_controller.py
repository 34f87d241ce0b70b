"""A stand-in for the AWS Load Balancer Controller's one visible effect on an Ingress: its address.

The kit runs no ingress controller and moto runs no load balancer. For an Ingress of class `alb`, the
controller provisions an Application Load Balancer in the cluster VPC's subnets tagged
`kubernetes.io/role/elb` and writes the ALB's DNS name into the Ingress's `status.loadBalancer.ingress[].hostname`
(https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/subnet_discovery/ and
https://docs.aws.amazon.com/eks/latest/userguide/alb-ingress.html: "kubectl get ingress ... ADDRESS
k8s-...elb.amazonaws.com"). Here: the ALB is made in moto (so Route53's ALIAS target and ELBv2's
DescribeLoadBalancers answer as they would) and the status is written by the cluster admin, asynchronously,
as the controller does, while `make dns` waits for it.

Not imitated: listeners, target groups, rules and the certificate on the listener (nothing serves HTTPS
at the ALB's name here), and the controller's validation of the Ingress's annotations.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from kubernetes import client

from tests.realcluster import api
from tests.sim.eks import ALB_SUBNET_TAG, MOTO_KEYS, REGION


class AlbController:
    """Watches `namespace` for the Ingress `name` of class alb and gives it an ALB's address, once."""

    def __init__(self, networking: Any, moto_url: str, vpc: str, namespace: str, name: str, balancer: str) -> None:
        self.networking, self.namespace, self.name = networking, namespace, name
        self.moto_url, self.vpc, self.balancer = moto_url, vpc, balancer
        self.address = ""
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AlbController:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ingress = self._ingress()
                if ingress is not None and ingress.spec.ingress_class_name == "alb":
                    current = (ingress.status.load_balancer.ingress or []) if ingress.status.load_balancer else []
                    if not current:
                        self.address = self.address or self._load_balancer()
                        status = {"status": {"loadBalancer": {"ingress": [{"hostname": self.address}]}}}
                        self.networking.patch_namespaced_ingress_status(self.name, self.namespace, status)
                self._stop.wait(0.5)
        except Exception as exc:  # reported by the test (the address stays empty)
            self.error = exc

    def _ingress(self) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return self.networking.read_namespaced_ingress(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _load_balancer(self) -> str:
        """The ALB in the cluster VPC's subnets tagged for internet-facing load balancers (its DNS name)."""
        ec2 = boto3.client("ec2", endpoint_url=self.moto_url, region_name=REGION, **MOTO_KEYS)
        subnets = ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [self.vpc]}, {"Name": "tag-key", "Values": [ALB_SUBNET_TAG]}]
        )["Subnets"]
        elbv2 = boto3.client("elbv2", endpoint_url=self.moto_url, region_name=REGION, **MOTO_KEYS)
        existing = elbv2.describe_load_balancers()["LoadBalancers"]
        for balancer in existing:
            if balancer["LoadBalancerName"] == self.balancer:
                return balancer["DNSName"]
        made = elbv2.create_load_balancer(
            Name=self.balancer, Subnets=[s["SubnetId"] for s in subnets], Scheme="internet-facing", Type="application"
        )
        return made["LoadBalancers"][0]["DNSName"]


def ensure_alb_class(cluster: str) -> None:
    """The IngressClass the AWS Load Balancer Controller installs (cluster-scoped; left for other runs, as the
    session's nginx class is)."""
    body = {"metadata": {"name": "alb"}, "spec": {"controller": "ingress.k8s.aws/alb"}}
    try:
        client.NetworkingV1Api(api(cluster)).create_ingress_class(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
