"""AWS: EKS (token signed with boto3, no aws CLI), ECR, S3 through Mountpoint's CSI driver, IRSA."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from tools.cloud.awscall import aws_call as _aws_call
from tools.cloud.base import (
    BACKEND_SERVICE_ACCOUNT,
    USER_SERVICE_ACCOUNT,
    Cloud,
    RegistryAuth,
    temporary_kubeconfig,
)
from tools.errors import ToolError
from tools.permissions import everywhere, hint, need
from tools.settings import IMAGES


def _arn(cloud: AwsCloud, service: str, resource: str) -> str:
    s = cloud.settings
    return f"arn:aws:{service}:{s['AWS_REGION']}:{s['AWS_ACCOUNT_ID']}:{resource}"


def ecr_repositories(cloud: AwsCloud) -> list[str]:
    """The ARNs of the three images' ECR repositories."""
    return [_arn(cloud, "ecr", f"repository/{cloud.repository_name(image)}") for image in IMAGES]


def _cluster(cloud: AwsCloud) -> list[str]:
    return [_arn(cloud, "eks", f"cluster/{cloud.settings.cluster_name}")]


def _buckets(cloud: AwsCloud) -> list[str]:
    return [f"arn:aws:s3:::{cloud.database_bucket}", f"arn:aws:s3:::{cloud.smoke_bucket}"]


def _irsa_roles(cloud: AwsCloud) -> list[str]:
    return sorted({cloud.settings["AWS_IRSA_ROLE_ARN"], cloud.settings["AWS_USER_IRSA_ROLE_ARN"]})


def _storage_check_objects(cloud: AwsCloud) -> list[str]:
    from tools.smoke.storage import STORAGE_PREFIX

    return [f"arn:aws:s3:::{cloud.smoke_bucket}/{STORAGE_PREFIX}*"]


class AwsCloud(Cloud):
    """The `need(...)` lines declare, beside each call, what the deploy role may do (`make cloud-setup`)."""

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

    need(
        "aws",
        "ecr:GetAuthorizationToken",
        everywhere,
        "docker login to ECR (granted on * only)",
        ("GetAuthorizationToken",),
    )

    def registry_login(self) -> RegistryAuth:
        import base64

        token = _aws_call(lambda: self._client("ecr").get_authorization_token(), "ECR get_authorization_token")
        data = token["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        from tools.report import REPORTER

        REPORTER.register_secrets([password])
        return RegistryAuth(self.registry(), user, password)

    need(
        "aws",
        "ecr:DescribeRepositories",
        ecr_repositories,
        "does each image's repository exist",
        ("DescribeRepositories",),
    )
    need("aws", "ecr:CreateRepository", ecr_repositories, "create a missing repository", ("CreateRepository",))

    def ensure_repositories(self) -> list[str]:
        ecr = self._client("ecr")
        created = []
        for image in IMAGES:
            name = self.repository_name(image)
            try:
                _aws_call(lambda n=name: ecr.describe_repositories(repositoryNames=[n]), f"ECR describe {name}")
            except ToolError as missing:
                if missing.code != "RepositoryNotFoundException":
                    raise
                _aws_call(
                    lambda n=name: ecr.create_repository(
                        repositoryName=n,
                        imageTagMutability="IMMUTABLE",
                        imageScanningConfiguration={"scanOnPush": True},
                        encryptionConfiguration={"encryptionType": "AES256"},
                    ),
                    f"ECR create_repository {name}",
                )
                created.append(name)
        return created

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.settings["AWS_REGION"])

    # -- cluster access (no aws CLI: describe_cluster + a token signed with boto3) ----------------
    need(
        "aws", "eks:DescribeCluster", _cluster, "the cluster's endpoint, CA, OIDC issuer and VPC", ("DescribeCluster",)
    )

    @functools.cached_property
    def eks_cluster(self) -> dict[str, Any]:
        """`describe_cluster` of CLUSTER_NAME (asked once per Cloud object)."""
        name, region = self.settings.cluster_name, self.settings["AWS_REGION"]
        eks = self._client("eks")

        def describe() -> dict[str, Any]:
            try:
                return eks.describe_cluster(name=name)["cluster"]
            except eks.exceptions.ResourceNotFoundException:
                raise ToolError(f"EKS cluster {name} not found in {region}: check CLUSTER_NAME, AWS_REGION") from None

        return _aws_call(describe, "EKS describe_cluster")

    def eks_token(self) -> str:
        return eks_token(self.settings.cluster_name, self.settings["AWS_REGION"])

    need("aws", ("ec2:DescribeSubnets", "ec2:DescribeVpcs"), everywhere,
         "the CIDR blocks the NetworkPolicy admits the load balancer from (EC2 Describe* is on * only)",
         ("DescribeSubnets", "DescribeVpcs"))  # fmt: skip

    def vpc_cidrs(self) -> list[str]:
        """Where the ALB (target type ip) reaches pods from: the CIDR blocks of the cluster VPC's
        subnets tagged for internet-facing load balancers (`kubernetes.io/role/elb`, the tag the
        AWS Load Balancer Controller picks its subnets by). Pods of the VPC CNI take addresses of
        the node subnets, so with the ALB in subnets of its own the policies admit the ALB and no
        pod; with no tagged subnet they fall back to the whole VPC, with a warning.

        Read at deploy time (describe_cluster -> VPC -> describe_subnets / describe_vpcs).
        """
        from tools.report import REPORTER

        config = self.eks_cluster.get("resourcesVpcConfig") or {}
        ec2 = self._client("ec2")
        vpc_id = config.get("vpcId")
        if not vpc_id and config.get("subnetIds"):
            subnets = _aws_call(
                lambda: ec2.describe_subnets(SubnetIds=config["subnetIds"])["Subnets"], "EC2 describe_subnets"
            )
            vpc_id = subnets[0]["VpcId"] if subnets else ""
        if not vpc_id:
            raise ToolError(f"EKS cluster {self.settings.cluster_name} names no VPC: check the cluster in the console")
        tagged = _aws_call(
            lambda: ec2.describe_subnets(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "tag-key", "Values": [ALB_SUBNET_TAG]}]
            )["Subnets"],
            "EC2 describe_subnets",
        )
        if tagged:
            return sorted({subnet["CidrBlock"] for subnet in tagged})
        REPORTER.warning(
            f"no subnet of {vpc_id} is tagged {ALB_SUBNET_TAG}: the NetworkPolicies admit the load balancer from "
            "the whole VPC, which holds the pods too; tag the ALB's subnets (and keep pods out of them)",
            title="helm_deploy",
        )
        vpcs = _aws_call(lambda: ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"], "EC2 describe_vpcs")
        blocks = {
            a["CidrBlock"]
            for v in vpcs
            for a in v.get("CidrBlockAssociationSet") or []
            if (a.get("CidrBlockState") or {}).get("State", "associated") == "associated"
        }
        return sorted(blocks or {v["CidrBlock"] for v in vpcs})

    def workload_policies(self) -> list[tuple[str, str]]:
        import json

        database, users = f"arn:aws:s3:::{self.database_bucket}", f"arn:aws:s3:::{self.user_bucket_prefix}-*"
        objects = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]

        def allow(sid: str, actions: list[str], resource: str) -> dict[str, Any]:
            return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}

        making = ["s3:CreateBucket", "s3:ListBucket", "s3:GetBucketLocation", "s3:PutEncryptionConfiguration"]
        making += ["s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls"]
        backend = [  # Litestream's replica in the database bucket, and making each user's bucket
            allow("DatabaseReplicaBucket", ["s3:ListBucket", "s3:GetBucketLocation"], database),
            allow("DatabaseReplicaObjects", objects, f"{database}/*"),
            allow("UserBuckets", making, users),
        ]
        user = [  # the user buckets' name pattern only: Mountpoint lists, reads, writes and deletes
            allow("UserBuckets", ["s3:ListBucket", "s3:GetBucketLocation"], users),
            allow("UserObjects", objects, f"{users}/*"),
        ]
        return [
            (
                f"{self.settings['AWS_IRSA_ROLE_ARN']} (the backend)",
                json.dumps({"Version": "2012-10-17", "Statement": backend}, indent=2),
            ),
            (
                f"{self.settings['AWS_USER_IRSA_ROLE_ARN']} (user pods)",
                json.dumps({"Version": "2012-10-17", "Statement": user}, indent=2),
            ),
        ]

    def access_hint(self, namespace: str) -> str:
        from tools.rbac import deploy_group

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
        from tools.cloud.route53 import Route53Zone

        return Route53Zone(self.settings["DNS_ZONE"], self.settings["AWS_REGION"])

    def found_certificate(self) -> str:
        """With DNS_ZONE and no AWS_CERTIFICATE_ARN: the ISSUED certificate the certs step made or found."""
        from tools.report import REPORTER

        s = self.settings
        if s["AWS_CERTIFICATE_ARN"] or not s["DNS_ZONE"]:
            return ""
        from tools.cloud.acm import Certificates

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
        from tools.cloud.acm import ensure_certificate

        return "ok", ensure_certificate(s, self.dns_owner, dry_run=dry_run, timeout=timeout)[1]

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        from tools.report import REPORTER

        cluster = self.eks_cluster
        status = cluster.get("status", "ACTIVE")
        if status == "UPDATING":  # an add-on or version upgrade: the API keeps answering meanwhile
            REPORTER.warning(f"EKS cluster {cluster['name']} is UPDATING (an upgrade is under way); going on")
        elif status != "ACTIVE":
            raise ToolError(f"EKS cluster {cluster['name']} is {status}: wait until it is ACTIVE")
        ca = (cluster.get("certificateAuthority") or {}).get("data", "")
        name = cluster.get("arn") or cluster["name"]
        self.eks_token()  # fail here, in one clear line, when the credentials cannot sign one
        # An EKS token lasts 15 minutes: helm and the tools' client run this plugin again for a
        # fresh one when it expires (a slow rollout plus a rollback outlives one token).
        plugin = {
            "apiVersion": EXEC_API_VERSION,
            "command": sys.executable,
            "args": ["-m", "tools.eks_token", "--cluster", cluster["name"], "--region", self.settings["AWS_REGION"]],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }
        with temporary_kubeconfig(name, cluster["endpoint"], ca, user={"exec": plugin}) as path:
            yield path

    # -- database bucket -----------------------------------------------------------------------
    @property
    def smoke_bucket(self) -> str:
        return f"{self.user_bucket_prefix}-smoke-{self.settings['AWS_ACCOUNT_ID']}"  # names are global in S3

    need("aws", "s3:ListBucketVersions", lambda c: [f"arn:aws:s3:::{c.smoke_bucket}"],
         "find what the storage check wrote", ("ListObjectVersions",))  # fmt: skip
    need("aws", ("s3:DeleteObject", "s3:DeleteObjectVersion"), _storage_check_objects,
         "remove what the storage check wrote (every version)", ("DeleteObjects",))  # fmt: skip

    def empty_storage_check(self, bucket: str, prefix: str) -> int:
        """Delete every version of the storage check's objects (the bucket is versioned)."""
        s3 = self._client("s3")

        def delete() -> int:
            listing = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for section in ("Versions", "DeleteMarkers")
                for v in listing.get(section) or []
            ]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            return len(doomed)

        return _aws_call(delete, f"S3 emptying the storage check's objects in {bucket}")

    def bucket_keys(self, bucket: str, prefix: str, limit: int = 1) -> list[str]:
        s3 = self._client("s3")

        def listing() -> list[str]:
            import botocore.exceptions

            try:
                answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                    return []
                raise
            return [o["Key"] for o in answer.get("Contents") or []]

        return _aws_call(listing, f"S3 listing s3://{bucket}/{prefix}")

    def download(self, bucket: str, key: str, path: str) -> bool:
        import botocore.exceptions

        s3 = self._client("s3")

        def fetch() -> bool:
            try:
                s3.download_file(bucket, key, path)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return False
                raise
            return True

        return _aws_call(fetch, f"S3 downloading s3://{bucket}/{key}")

    need("aws", "s3:ListBucket", _buckets,
         "head_bucket (does it exist, is it this account's); list the database bucket (preflight's backup state)",
         ("HeadBucket", "ListObjectsV2"))  # fmt: skip
    need("aws", ("s3:CreateBucket", "s3:PutBucketOwnershipControls"), _buckets,
         "create the bucket with ObjectOwnership=BucketOwnerEnforced", ("CreateBucket",))  # fmt: skip

    def ensure_bucket(self, name: str, dry_run: bool = False) -> str:
        import botocore.exceptions

        region, account = self.settings["AWS_REGION"], self.settings["AWS_ACCOUNT_ID"]
        s3 = self._client("s3")

        def head() -> bool:
            try:
                s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
                return True
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    return False
                if code in ("403", "AccessDenied", "Forbidden"):
                    raise ToolError(
                        f"S3 bucket {name} exists but is not this account's ({account}) or may not be read by these "
                        "credentials: grant s3:ListBucket, or pick another CLUSTER_NAME if the name is taken"
                    ) from None
                raise

        exists = _aws_call(head, f"S3 head_bucket {name}")
        if not exists:
            if dry_run:
                return f"s3://{name} would be created (public access blocked, encrypted, versioned)"
            config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            _aws_call(
                lambda: s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced", **config),
                f"S3 create_bucket {name}",
            )
        fixes = self._secure_bucket(s3, name, dry_run)
        if not exists:
            return f"s3://{name} created (public access blocked, encrypted, versioned)"
        if fixes:
            return f"s3://{name} exists; {'would enable' if dry_run else 'enabled'} {', '.join(fixes)}"
        return f"s3://{name} exists (public access blocked, encrypted, versioned)"

    need("aws", ("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"), _buckets, "block public access",
         ("GetPublicAccessBlock", "PutPublicAccessBlock"))  # fmt: skip
    need("aws", ("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"), _buckets, "default encryption",
         ("GetBucketEncryption", "PutBucketEncryption"))  # fmt: skip
    need("aws", ("s3:GetBucketVersioning", "s3:PutBucketVersioning"), _buckets, "versioning",
         ("GetBucketVersioning", "PutBucketVersioning"))  # fmt: skip

    def _secure_bucket(self, s3: Any, name: str, dry_run: bool) -> list[str]:
        """Read each security setting; write only the ones that are not as they must be."""
        import botocore.exceptions

        def current(call: Any, missing_code: str) -> Any:
            def read() -> Any:
                try:
                    return call()
                except botocore.exceptions.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == missing_code:
                        return None
                    raise

            return _aws_call(read, f"S3 reading the settings of {name}")

        block = {k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}
        access = current(lambda: s3.get_public_access_block(Bucket=name), "NoSuchPublicAccessBlockConfiguration")
        no_encryption = "ServerSideEncryptionConfigurationNotFoundError"
        encryption = current(lambda: s3.get_bucket_encryption(Bucket=name), no_encryption)
        versioning = current(lambda: s3.get_bucket_versioning(Bucket=name), "") or {}
        settings = {
            "public access block": (
                (access or {}).get("PublicAccessBlockConfiguration") == block,
                lambda: s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block),
            ),
            "default encryption": (
                bool(encryption),
                lambda: s3.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                    },
                ),
            ),
            "versioning": (
                versioning.get("Status") == "Enabled",
                lambda: s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"}),
            ),
        }
        fixes = [label for label, (in_place, _) in settings.items() if not in_place]
        if not dry_run:
            for label in fixes:
                _aws_call(settings[label][1], f"S3 enabling {label} on {name}")
        return fixes

    # -- prerequisites -------------------------------------------------------------------------
    def prerequisites(self, api: Any) -> tuple[list[str], list[str]]:
        missing, unchecked = super().prerequisites(api)
        enforcement = self.network_policy_warning()
        return missing + self.trust_problems(), unchecked + ([enforcement] if enforcement else [])

    need("aws", "eks:DescribeAddon", lambda c: [_arn(c, "eks", f"addon/{c.settings.cluster_name}/vpc-cni/*")],
         "does the VPC CNI enforce NetworkPolicy", ("DescribeAddon",))  # fmt: skip

    def network_policy_warning(self) -> str | None:
        """EKS enforces NetworkPolicy only when the VPC CNI add-on's network policy agent is on;
        without it the chart's policies (user pods' isolation, no metadata service) do nothing."""
        import json

        import botocore.exceptions

        cluster = self.settings.cluster_name
        fix = (
            f"aws eks update-addon --cluster-name {cluster} --addon-name vpc-cni "
            """--configuration-values '{"enableNetworkPolicy":"true"}'"""
        )
        try:
            addon = self._client("eks").describe_addon(clusterName=cluster, addonName="vpc-cni")["addon"]
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                return f"EKS cluster {cluster} has no managed vpc-cni add-on: NetworkPolicy is not enforced; {fix}"
            return f"NetworkPolicy enforcement of {cluster} not checked: reading the vpc-cni add-on answered {code}" + (
                hint("DescribeAddon") if "AccessDenied" in str(code) else ""
            )
        except botocore.exceptions.BotoCoreError as exc:
            return f"NetworkPolicy enforcement of {cluster} not checked: reading the vpc-cni add-on failed ({exc})"
        try:
            values = json.loads(addon.get("configurationValues") or "{}")
        except ValueError:
            values = {}
        if str(values.get("enableNetworkPolicy", "")).lower() != "true":
            return f"EKS cluster {cluster} does not enforce NetworkPolicy (vpc-cni enableNetworkPolicy is off): {fix}"
        return None

    need("aws", "iam:GetRole", _irsa_roles, "preflight reads the IRSA roles' trust policies", ("GetRole",))

    def trust_problems(self) -> list[str]:
        """Each IRSA role must trust this cluster's OIDC issuer for its service account in NAMESPACE."""
        issuer = ((self.eks_cluster.get("identity") or {}).get("oidc") or {}).get("issuer", "")
        issuer = issuer.removeprefix("https://")
        if not issuer:
            return [
                f"EKS cluster {self.settings.cluster_name} has no OIDC issuer: associate an IAM OIDC provider "
                "(IRSA needs it), e.g. `eksctl utils associate-iam-oidc-provider --approve`"
            ]
        namespace = self.settings.namespace
        wanted: dict[str, list[str]] = {}
        for key, account in (
            ("AWS_IRSA_ROLE_ARN", BACKEND_SERVICE_ACCOUNT),
            ("AWS_USER_IRSA_ROLE_ARN", USER_SERVICE_ACCOUNT),
        ):
            wanted.setdefault(self.settings[key], []).append(account)
        iam = self._client("iam")
        problems = []
        for arn, accounts in wanted.items():
            role = arn.split(":role/", 1)[-1].split("/")[-1]

            def read(role: str = role) -> Any:
                try:
                    return iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
                except iam.exceptions.NoSuchEntityException:
                    return None

            document = _aws_call(read, f"IAM get_role {role}")
            if document is None:
                problems.append(f"IAM role {role} ({arn}) does not exist: create it with a trust policy for IRSA")
                continue
            if isinstance(document, str):  # the API returns it URL-encoded when not decoded by boto3
                import json
                import urllib.parse

                document = json.loads(urllib.parse.unquote(document))
            for account in accounts:
                subject = f"system:serviceaccount:{namespace}:{account}"
                if not trust_admits(document, issuer, subject):
                    problems.append(
                        f"IAM role {role} does not trust {subject} through {issuer}: add a statement allowing "
                        f"sts:AssumeRoleWithWebIdentity by that provider where StringEquals {issuer}:sub = {subject}"
                    )
        return problems


def trust_admits(document: dict[str, Any], issuer: str, subject: str) -> bool:
    """Whether an IAM trust policy lets `subject` (system:serviceaccount:NS:SA) assume the role through `issuer`."""
    import fnmatch

    statements = document.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        federated = (statement.get("Principal") or {}).get("Federated") or []
        federated = [federated] if isinstance(federated, str) else federated
        if statement.get("Effect") != "Allow" or not any(
            a in ("sts:AssumeRoleWithWebIdentity", "sts:*", "*") for a in actions
        ):
            continue
        if not any(f.endswith(f":oidc-provider/{issuer}") for f in federated):
            continue
        conditions = statement.get("Condition") or {}
        tests = []
        for operator, match in (("StringEquals", str.__eq__), ("StringLike", fnmatch.fnmatchcase)):
            values = (conditions.get(operator) or {}).get(f"{issuer}:sub")
            if values is not None:
                values = [values] if isinstance(values, str) else values
                tests.append(any(match(subject, v) for v in values))
        if not tests or all(tests):  # no :sub condition admits every service account of the cluster
            return True
    return False


ALB_SUBNET_TAG = "kubernetes.io/role/elb"  # subnets for internet-facing load balancers
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
EKS_TOKEN_LIFETIME = 14 * 60  # seconds: EKS accepts a token for 15 minutes; renew a minute early


def eks_token(cluster: str, region: str) -> str:
    """A bearer token for EKS, made as aws-iam-authenticator makes it.

    `k8s-aws-v1.` + unpadded base64url of a presigned STS GetCallerIdentity URL (60 s) whose
    signed headers include `x-k8s-aws-id: CLUSTER`."""
    import base64

    import boto3

    from tools.report import REPORTER

    sts = boto3.client("sts", region_name=region)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster  # signed: EKS checks the token is for this cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = _aws_call(
        lambda: sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET"),
        "signing the EKS token (STS GetCallerIdentity)",
    )
    token = "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    REPORTER.register_secrets([token])
    return token
