"""AWS: EKS (token signed with boto3, no aws CLI), ECR, S3 through Mountpoint's CSI driver, IRSA.

The provider's answers; the calls to each AWS service are in modules of their own (ecr, eks, vpc,
s3, iam, route53, acm), each declaring beside its calls what the deploy role may do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from tools.cloud import ecr, eks, iam, s3, vpc
from tools.cloud.acm import Certificates, ensure_certificate
from tools.cloud.awscall import client
from tools.cloud.base import Cloud, RegistryAuth
from tools.cloud.route53 import Route53Zone
from tools.kube_client import KubeApi
from tools.kube_rights import deploy_group
from tools.report import REPORTER
from tools.settings import IMAGES


class AwsCloud(Cloud):
    """The AWS answers of the shim; each AWS service's calls (and the permissions they need) in a module of its own."""

    name = "aws"
    csi_driver = "s3.csi.aws.com"
    csi_driver_install = "add the EKS add-on aws-mountpoint-s3-csi-driver (Mountpoint for Amazon S3 CSI driver)"
    # Mountpoint for S3 options; uid/gid match the app's user so it can write.
    # allow-overwrite: users re-save their files (Mountpoint refuses overwrites without it)
    mount_options: ClassVar[list[str]] = ["allow-delete", "allow-overwrite", "allow-other", "uid=1000", "gid=1000"]
    ingress_class = "alb"
    block_provisioner = "ebs.csi.aws.com"
    block_provisioner_install = "add the EKS add-on aws-ebs-csi-driver (Amazon EBS CSI driver)"
    # Mountpoint for S3 cannot rename in general-purpose buckets: the storage check does not try
    renames_files = False
    immutable_tags = True  # ensure_repositories creates them with imageTagMutability=IMMUTABLE

    def default_registry(self) -> str:
        s = self.settings
        return f"{s['AWS_ACCOUNT_ID']}.dkr.ecr.{s['AWS_REGION']}.amazonaws.com"

    def service_account_annotations(self, role: str) -> dict[str, str]:
        key = "AWS_IRSA_ROLE_ARN" if role == "backend" else "AWS_USER_IRSA_ROLE_ARN"
        return {"eks.amazonaws.com/role-arn": self.settings[key]}

    def global_cloud_values(self) -> dict[str, Any]:
        s = self.settings
        return {
            "aws": {
                "accountId": s["AWS_ACCOUNT_ID"],
                "region": s["AWS_REGION"],
                "roleArn": s["AWS_IRSA_ROLE_ARN"],
                "userRoleArn": s["AWS_USER_IRSA_ROLE_ARN"],
            }
        }

    def storage_values(self) -> dict[str, Any]:
        values = super().storage_values()
        values["aws"]["mountOptions"].append(f"region {self.settings['AWS_REGION']}")
        return values

    def ingress_values(self) -> dict[str, Any]:
        return {"className": "alb", "aws": {"certificateArn": self.settings["AWS_CERTIFICATE_ARN"]}}

    def registry_login(self) -> RegistryAuth:
        user, password = ecr.login(self._client("ecr"))
        return RegistryAuth(self.registry(), user, password)

    def ensure_repositories(self) -> list[str]:
        return ecr.ensure_repositories(self._client("ecr"), [self.repository_name(image) for image in IMAGES])

    def _client(self, service: str) -> Any:
        return client(service, self.settings["AWS_REGION"])

    # -- cluster access (no aws CLI: describe_cluster + a token signed with boto3) ----------------
    @functools.cached_property
    def eks_cluster(self) -> dict[str, Any]:
        """`describe_cluster` of CLUSTER_NAME (asked once per Cloud object)."""
        return eks.describe_cluster(self._client("eks"), self.settings.cluster_name, self.settings["AWS_REGION"])

    def eks_token(self) -> str:
        return eks.eks_token(self.settings.cluster_name, self.settings["AWS_REGION"])

    def vpc_cidrs(self) -> list[str]:
        """Where the ALB reaches pods from (tools.cloud.vpc), read at deploy time."""
        return vpc.load_balancer_cidrs(self._client("ec2"), self.eks_cluster)

    def workload_policies(self) -> list[tuple[str, str]]:
        return iam.workload_policies(self.settings, self.database_bucket, self.user_bucket_prefix)

    def access_hint(self, namespace: str) -> str:
        group = deploy_group(namespace)
        return (
            f"; on EKS: the deploy role's access entry in group {group} (aws eks create-access-entry "
            f"--kubernetes-groups {group}, as `make cloud-setup CLOUD=aws` prints it) and "
            f'`make rbac CLOUD=aws ARGS="--subject Group:{group}"` applied: an access policy alone cannot '
            "create the chart's Roles"
        )

    def deploy_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"networkPolicy": {"aws": {"loadBalancerCidrs": self.vpc_cidrs()}}}
        arn = self.found_certificate()
        if arn:
            values["ingress"] = {"aws": {"certificateArn": arn}}
        return values

    # -- DNS and certificates (tools.cloud.route53, tools.cloud.acm) -------------------------------
    def dns_zone(self) -> Any | None:
        if not self.settings["DNS_ZONE"]:
            return None
        return Route53Zone(self.settings["DNS_ZONE"], self.settings["AWS_REGION"])

    def found_certificate(self) -> str:
        """With DNS_ZONE and no AWS_CERTIFICATE_ARN: the ISSUED certificate the certs step made or found."""
        s = self.settings
        if s["AWS_CERTIFICATE_ARN"] or not s["DNS_ZONE"]:
            return ""
        arn = Certificates(s["AWS_REGION"], s["BASE_DOMAIN"], self.dns_owner).issued()
        if not arn:
            REPORTER.warning(
                f"no ISSUED ACM certificate for {s['BASE_DOMAIN']} and *.{s['BASE_DOMAIN']} yet: run make certs "
                "first; meanwhile the AWS Load Balancer Controller looks for one by host"
            )
        return arn or ""

    def ensure_certificate(self, *, dry_run: bool, timeout: float) -> tuple[str, str]:
        s = self.settings
        if s["AWS_CERTIFICATE_ARN"]:
            return "ok", f"AWS_CERTIFICATE_ARN is given: {s['AWS_CERTIFICATE_ARN']} (used as it is)"
        if not s["DNS_ZONE"]:
            return "skip", "DNS_ZONE is not set: the AWS Load Balancer Controller looks for a certificate by host"
        return "ok", ensure_certificate(s, self.dns_owner, dry_run=dry_run, timeout=timeout)[1]

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        with eks.cluster_kubeconfig(self.eks_cluster, self.settings["AWS_REGION"]) as path:
            yield path

    # -- buckets (tools.cloud.s3) ------------------------------------------------------------------
    @property
    def smoke_bucket(self) -> str:
        return f"{self.user_bucket_prefix}-smoke-{self.settings['AWS_ACCOUNT_ID']}"  # names are global in S3

    def empty_storage_check(self, bucket: str, prefix: str) -> int:
        """Delete every version of the storage check's objects (the bucket is versioned)."""
        return s3.empty_prefix(self._client("s3"), bucket, prefix)

    def bucket_keys(self, bucket: str, prefix: str, limit: int = 1) -> list[str]:
        return s3.keys(self._client("s3"), bucket, prefix, limit)

    def download(self, bucket: str, key: str, path: str) -> bool:
        return s3.download(self._client("s3"), bucket, key, path)

    def ensure_bucket(self, name: str, dry_run: bool = False) -> str:
        s = self.settings
        return s3.ensure_bucket(self._client("s3"), name, s["AWS_REGION"], s["AWS_ACCOUNT_ID"], dry_run)

    # -- prerequisites -------------------------------------------------------------------------
    def prerequisites(self, api: KubeApi) -> tuple[list[str], list[str]]:
        missing, unchecked = super().prerequisites(api)
        enforcement = self.network_policy_warning()
        return missing + self.trust_problems(), unchecked + ([enforcement] if enforcement else [])

    def network_policy_warning(self) -> str | None:
        return eks.network_policy_warning(self._client("eks"), self.settings.cluster_name)

    def trust_problems(self) -> list[str]:
        issuer = ((self.eks_cluster.get("identity") or {}).get("oidc") or {}).get("issuer", "")
        return iam.trust_problems(self._client("iam"), self.settings, issuer)
