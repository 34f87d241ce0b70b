"""The cloud shim: the one place that knows how AWS, GCP and a plain local cluster differ.

Scripts ask a `Cloud` for names, annotations, drivers and chart values; they never branch on
the cloud themselves. Cloud SDKs (boto3, google-auth) are imported inside the methods that
talk to a cloud, so `--help` and `plan` never import them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from tools.errors import ToolError
from tools.settings import IMAGES, Settings

USER_SERVICE_ACCOUNT = "cmbcluster-user-sa"
BACKEND_SERVICE_ACCOUNT = "cmbcluster-ksa"
BACKEND_SECRET = "cmbcluster-backend-secrets"
FRONTEND_SECRET = "cmbcluster-frontend-secrets"
USER_ENV_PORT = 8888
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# What creates each ingress class the chart may use (GKE's built-in `gce` controller needs no IngressClass object).
INGRESS_CONTROLLERS = {
    "alb": "install the AWS Load Balancer Controller (its Helm chart creates IngressClass alb)",
    "nginx": "install ingress-nginx (its Helm chart creates IngressClass nginx) or set INGRESS_CLASS",
}


def database_bucket_name(cloud: str, cluster_name: str, project_id: str = "", account_id: str = "") -> str:
    """The database bucket's name. The chart's `cmbcluster.databaseBucket` helper says the same."""
    if cloud == "gcp":
        return f"{project_id}-{cluster_name}-db"
    if cloud == "aws":
        return f"{cluster_name}-db-{account_id}"
    return f"{cluster_name}-db"


def user_bucket_prefix(cluster_name: str) -> str:
    return f"{cluster_name}-user"


def check_bucket_name(name: str) -> str | None:
    """Why `name` is not a valid S3/GCS bucket name, or None."""
    if not _BUCKET.match(name) or "--" in name:
        return f"bucket name {name!r} is invalid (3-63 lowercase letters, digits, single hyphens)"
    return None


@dataclass(frozen=True)
class Image:
    name: str  # backend | frontend | user-env
    repository: str  # registry/path without tag


@dataclass(frozen=True)
class RegistryAuth:
    registry: str
    username: str
    password: str


class Cloud:
    """What every provider answers. Subclasses fill in the differences and nothing else."""

    name: ClassVar[str]
    csi_driver: ClassVar[str]
    csi_driver_install: ClassVar[str] = ""  # how to get the CSI driver when the cluster lacks it
    mount_options: ClassVar[list[str]]
    ingress_class: ClassVar[str]
    immutable_tags: ClassVar[bool] = False  # True: a pushed tag can never be pushed again (ECR)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- names ---------------------------------------------------------------------------
    @property
    def database_bucket(self) -> str:
        s = self.settings
        return database_bucket_name(self.name, s.cluster_name, s["PROJECT_ID"], s["AWS_ACCOUNT_ID"])

    @property
    def user_bucket_prefix(self) -> str:
        return user_bucket_prefix(self.settings.cluster_name)

    def registry(self) -> str:
        return self.settings["REGISTRY_URL"] or self.default_registry()

    def default_registry(self) -> str:
        raise NotImplementedError

    def repository_name(self, image: str) -> str:
        """The repository path inside the registry, e.g. `cmbcluster-backend`."""
        if image not in IMAGES:
            raise ToolError(f"unknown image {image!r}: use one of {', '.join(IMAGES)}", 2)
        return f"{self.settings.cluster_name}-{image}"

    def images(self) -> list[Image]:
        return [Image(name, f"{self.registry()}/{self.repository_name(name)}") for name in IMAGES]

    # -- identity, storage, pods -----------------------------------------------------------
    def service_account_annotations(self, role: str) -> dict[str, str]:
        """Annotations binding a Kubernetes service account (`backend` or `user`) to a cloud identity."""
        return {}

    def user_pod_annotations(self) -> dict[str, str]:
        return {}

    # -- cloud calls (lazy SDK imports) ------------------------------------------------------
    def registry_login(self) -> RegistryAuth | None:
        """Credentials for Docker, or None when the registry needs none."""
        return None

    def ensure_repositories(self) -> list[str]:
        """Make sure every image has a repository; return the ones created."""
        return []

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        """Yield the path of a kubeconfig for the target cluster; nothing it wrote stays on disk."""
        raise NotImplementedError
        yield ""

    def ensure_database_bucket(self, dry_run: bool = False) -> str:
        """Make sure the database bucket exists, private and encrypted; never deletes or empties one.

        Returns what was done (or would be, with `dry_run`), for the report.
        """
        return "none needed (the database lives on a PersistentVolumeClaim)"

    def prerequisites(self, api: Any) -> list[str]:
        """What the cluster (or the cloud account) lacks for the chart: one line each, saying what to install.

        `api` is a kubernetes ApiClient for the target cluster. Checks the CSI driver of this
        cloud's bucket mounts and the ingress class the chart uses.
        """
        from kubernetes import client

        from tools import kube

        missing = []
        if self.csi_driver and not kube.cluster_object_exists(
            api, lambda a: client.StorageV1Api(a).read_csi_driver(self.csi_driver), f"CSIDriver {self.csi_driver}"
        ):
            missing.append(f"CSIDriver {self.csi_driver} is not installed: {self.csi_driver_install}")
        hint = INGRESS_CONTROLLERS.get(self.ingress_class)
        if hint and not kube.cluster_object_exists(
            api,
            lambda a: client.NetworkingV1Api(a).read_ingress_class(self.ingress_class),
            f"IngressClass {self.ingress_class}",
        ):
            missing.append(f"IngressClass {self.ingress_class} does not exist: {hint}")
        return missing

    # -- chart ---------------------------------------------------------------------------
    def chart_values(self, images: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The chart values that follow from the settings and this cloud (see helm/values.yaml)."""
        s = self.settings
        image_values = {}
        for image in self.images():
            built = (images or {}).get(image.name, {})
            image_values[image.name] = {
                "repository": built.get("repository", image.repository),
                "tag": built.get("tag") or s["IMAGE_TAG"] or "latest",
                "digest": built.get("digest", ""),
            }
        providers = s.auth_providers()
        return {
            "global": {
                "cloudProvider": self.name,
                "clusterName": s.cluster_name,
                "environment": s.environment,
                "baseDomain": s["BASE_DOMAIN"],
                "apiUrl": s["API_URL"],
                "frontendUrl": s["FRONTEND_URL"],
                "registry": self.registry(),
                **self.global_cloud_values(),
            },
            "storage": self.storage_values(),
            "backend": {
                "image": image_values["backend"],
                "config": {
                    "authProvider": s["AUTH_PROVIDER"],
                    "googleClientId": s["GOOGLE_CLIENT_ID"] if "google" in providers else "",
                    "cognitoUserPoolId": s["COGNITO_USER_POOL_ID"] if "cognito" in providers else "",
                    "cognitoClientId": s["COGNITO_CLIENT_ID"] if "cognito" in providers else "",
                    "cognitoIssuer": s["COGNITO_ISSUER"] if "cognito" in providers else "",
                    "maxInactiveHours": s.number("MAX_INACTIVE_HOURS"),
                    "maxUserPods": s.number("MAX_USER_PODS"),
                },
            },
            "frontend": {"image": image_values["frontend"]},
            "userEnvironment": {"image": image_values["user-env"], "port": USER_ENV_PORT},
            "ingress": self.ingress_values(),
        }

    def global_cloud_values(self) -> dict[str, Any]:
        return {}

    def storage_values(self) -> dict[str, Any]:
        return {self.name: {"driver": self.csi_driver, "mountOptions": list(self.mount_options)}}

    def ingress_values(self) -> dict[str, Any]:
        return {"className": self.ingress_class}


class AwsCloud(Cloud):
    name = "aws"
    csi_driver = "s3.csi.aws.com"
    csi_driver_install = "add the EKS add-on aws-mountpoint-s3-csi-driver (Mountpoint for Amazon S3 CSI driver)"
    # Mountpoint for S3 options; uid/gid match the app's user so it can write.
    mount_options: ClassVar[list[str]] = ["allow-delete", "allow-other", "uid=1000", "gid=1000"]
    ingress_class = "alb"
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
        import base64

        token = _aws_call(lambda: self._client("ecr").get_authorization_token(), "ECR get_authorization_token")
        data = token["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        from tools.report import REPORTER

        REPORTER.register_secrets([password])
        return RegistryAuth(self.registry(), user, password)

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
        """A bearer token for EKS, made as aws-iam-authenticator makes it.

        `k8s-aws-v1.` + unpadded base64url of a presigned STS GetCallerIdentity URL (60 s) whose
        signed headers include `x-k8s-aws-id: CLUSTER`."""
        import base64

        from tools.report import REPORTER

        cluster = self.settings.cluster_name
        sts = self._client("sts")

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

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        cluster = self.eks_cluster
        if cluster.get("status", "ACTIVE") != "ACTIVE":
            raise ToolError(f"EKS cluster {cluster['name']} is {cluster['status']}: wait until it is ACTIVE")
        ca = (cluster.get("certificateAuthority") or {}).get("data", "")
        name = cluster.get("arn") or cluster["name"]
        with temporary_kubeconfig(name, cluster["endpoint"], ca, self.eks_token()) as path:
            yield path

    # -- database bucket -----------------------------------------------------------------------
    def ensure_database_bucket(self, dry_run: bool = False) -> str:
        import botocore.exceptions

        name, region, account = self.database_bucket, self.settings["AWS_REGION"], self.settings["AWS_ACCOUNT_ID"]
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
    def prerequisites(self, api: Any) -> list[str]:
        return super().prerequisites(api) + self.trust_problems()

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


class GcpCloud(Cloud):
    name = "gcp"
    csi_driver = "gcsfuse.csi.storage.gke.io"
    csi_driver_install = "enable the cluster's Cloud Storage FUSE CSI driver add-on (GcsFuseCsiDriver)"
    mount_options: ClassVar[list[str]] = [
        "implicit-dirs",
        "uid=1000",
        "gid=1000",
        "file-mode=0664",
        "dir-mode=0775",
    ]

    @property
    def ingress_class(self) -> str:  # type: ignore[override]
        return self.settings["INGRESS_CLASS"] or "nginx"

    def default_registry(self) -> str:
        s = self.settings
        return f"{s['REGION']}-docker.pkg.dev/{s['PROJECT_ID']}/{s['ARTIFACT_REGISTRY_REPOSITORY']}"

    def service_account_annotations(self, role: str) -> dict[str, str]:
        key = "GCP_SERVICE_ACCOUNT_EMAIL" if role == "backend" else "GCP_USER_SERVICE_ACCOUNT_EMAIL"
        return {"iam.gke.io/gcp-service-account": self.settings[key]}

    def user_pod_annotations(self) -> dict[str, str]:
        return {"gke-gcsfuse/volumes": "true"}

    def global_cloud_values(self) -> dict[str, Any]:
        s = self.settings
        return {
            "gcp": {
                "projectId": s["PROJECT_ID"],
                "region": s["REGION"],
                "workloadIdentityEmail": s["GCP_SERVICE_ACCOUNT_EMAIL"],
                "userWorkloadIdentityEmail": s["GCP_USER_SERVICE_ACCOUNT_EMAIL"],
            }
        }

    def ingress_values(self) -> dict[str, Any]:
        return {"className": self.ingress_class, "certManager": {"email": self.settings["LETSENCRYPT_EMAIL"]}}

    def registry_login(self) -> RegistryAuth:
        from tools.report import REPORTER

        token = google_access_token()
        REPORTER.register_secrets([token])
        return RegistryAuth(self.registry().split("/")[0], "oauth2accesstoken", token)

    # -- cluster access (no gcloud: the GKE REST API + a google-auth access token) ---------------
    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        import google.auth.exceptions
        import requests
        from google.auth.transport.requests import AuthorizedSession

        s = self.settings
        credentials = google_credentials()
        path = f"projects/{s['PROJECT_ID']}/locations/{s['GKE_LOCATION']}/clusters/{s.cluster_name}"
        try:
            response = AuthorizedSession(credentials).get(f"https://container.googleapis.com/v1/{path}", timeout=30)
        except google.auth.exceptions.RefreshError as exc:
            raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
        except requests.RequestException as exc:
            raise ToolError(f"cannot reach container.googleapis.com ({type(exc).__name__}): check network") from None
        if response.status_code == 404:
            raise ToolError(
                f"GKE cluster {s.cluster_name} not found in {s['PROJECT_ID']}/{s['GKE_LOCATION']}: "
                "check CLUSTER_NAME, PROJECT_ID and GKE_LOCATION"
            )
        if response.status_code == 403:
            raise ToolError(
                f"these Google credentials may not read GKE cluster {path}: grant roles/container.developer "
                "(and enable the Kubernetes Engine API)"
            )
        if response.status_code != 200:
            raise ToolError(f"GKE API answered HTTP {response.status_code} for {path}: {_google_error(response)}")
        cluster = response.json()
        if not cluster.get("endpoint"):
            raise ToolError(f"GKE cluster {path} has no endpoint yet (status {cluster.get('status')}): wait and retry")
        ca = (cluster.get("masterAuth") or {}).get("clusterCaCertificate", "")
        name = f"gke_{s['PROJECT_ID']}_{s['GKE_LOCATION']}_{s.cluster_name}"
        with temporary_kubeconfig(name, f"https://{cluster['endpoint']}", ca, credentials.token) as kubeconfig:
            yield kubeconfig

    # -- database bucket -----------------------------------------------------------------------
    def ensure_database_bucket(self, dry_run: bool = False) -> str:
        from google.api_core import exceptions

        name = self.database_bucket
        client = self._storage_client()
        try:
            bucket = client.lookup_bucket(name)
            created = False
            if bucket is None:
                if dry_run:
                    return f"gs://{name} would be created (uniform bucket-level access, public access prevention)"
                bucket = client.bucket(name)
                bucket.iam_configuration.uniform_bucket_level_access_enabled = True
                bucket.iam_configuration.public_access_prevention = "enforced"
                bucket = client.create_bucket(bucket, location=self.settings["REGION"])
                created = True
            # Read back and enforce: an existing bucket, or a service that ignored the settings on create.
            bucket.reload()
            iam = bucket.iam_configuration
            fixes = []
            if not iam.uniform_bucket_level_access_enabled:
                fixes.append("uniform bucket-level access")
                iam.uniform_bucket_level_access_enabled = True
            if iam.public_access_prevention != "enforced":
                fixes.append("public access prevention")
                iam.public_access_prevention = "enforced"
            if fixes and not dry_run:
                bucket.patch()
        except exceptions.Conflict:
            raise ToolError(f"GCS bucket name {name} is taken by another project: pick another CLUSTER_NAME") from None
        except exceptions.Forbidden as exc:
            raise ToolError(
                f"these Google credentials may not manage gs://{name}: grant roles/storage.admin on the project "
                f"({exc.message})"
            ) from None
        except exceptions.GoogleAPIError as exc:
            raise ToolError(f"GCS: {type(exc).__name__} on gs://{name}: {exc}") from None
        if created:
            return f"gs://{name} created (uniform bucket-level access, public access prevention)"
        if fixes:
            return f"gs://{name} exists; {'would enable' if dry_run else 'enabled'} {', '.join(fixes)}"
        return f"gs://{name} exists (uniform bucket-level access, public access prevention)"

    def _storage_client(self) -> Any:
        """google-cloud-storage; against STORAGE_EMULATOR_HOST (tests, local runs) with anonymous credentials."""
        import os

        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=self.settings["PROJECT_ID"], credentials=AnonymousCredentials())
        return storage.Client(project=self.settings["PROJECT_ID"], credentials=google_credentials())


class LocalCloud(Cloud):
    """A plain cluster (kind, k3s, minikube): no cloud identity, a PVC instead of a bucket."""

    name = "local"
    csi_driver = ""
    mount_options: ClassVar[list[str]] = []

    @property
    def ingress_class(self) -> str:  # type: ignore[override]
        return self.settings["INGRESS_CLASS"] or "nginx"

    def default_registry(self) -> str:
        return "127.0.0.1:5000"

    def storage_values(self) -> dict[str, Any]:
        return {"local": {"size": "1Gi"}}

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        """The user's own kubeconfig (KUBECONFIG or ~/.kube/config), pinned to KUBE_CONTEXT if given."""
        import os
        import tempfile

        import yaml

        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
        if not os.path.exists(path):
            raise ToolError(f"no kubeconfig at {path}: set KUBECONFIG or create a cluster (kind, k3s, minikube)")
        context = self.settings["KUBE_CONTEXT"]
        if not context:
            yield path
            return
        with open(path, encoding="utf-8") as source:
            config = yaml.safe_load(source) or {}
        if context not in [c.get("name") for c in config.get("contexts") or []]:
            raise ToolError(f"KUBE_CONTEXT: context {context!r} is not in {path}: use `kubectl config get-contexts`")
        config["current-context"] = context
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=True) as handle:
            os.chmod(handle.name, 0o600)
            yaml.safe_dump(config, handle)
            handle.flush()
            yield handle.name

    def ingress_values(self) -> dict[str, Any]:
        return {"className": self.ingress_class, "certManager": {"email": self.settings["LETSENCRYPT_EMAIL"]}}


PROVIDERS: dict[str, type[Cloud]] = {"aws": AwsCloud, "gcp": GcpCloud, "local": LocalCloud}


def cloud_for(settings: Settings) -> Cloud:
    return PROVIDERS[settings.cloud](settings)


def google_credentials() -> Any:
    """Application Default Credentials for the cloud-platform scope (no gcloud needed), not yet refreshed."""
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ToolError(
            "no Google credentials: run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS (in CI use google-github-actions/auth)"
        ) from None
    return credentials


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials (no gcloud needed)."""
    import google.auth.exceptions
    import google.auth.transport.requests

    credentials = google_credentials()
    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.RefreshError as exc:
        raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
    return credentials.token


def _google_error(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        return response.reason or "no message"


@contextmanager
def temporary_kubeconfig(name: str, server: str, ca_data: str, token: str) -> Iterator[str]:
    """A kubeconfig with one cluster, user (bearer token) and context: mode 0600 in a private
    temporary folder, removed with the folder when the block ends, whatever happens in it."""
    import os
    import shutil
    import tempfile

    import yaml

    from tools.report import REPORTER

    REPORTER.register_secrets([token])
    cluster: dict[str, str] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    folder = tempfile.mkdtemp(prefix="cmb-kube-")  # 0700, only this user
    try:
        path = os.path.join(folder, "kubeconfig")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


def _aws_call(call: Any, what: str) -> Any:
    """Turn botocore's errors into one clear line."""
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.NoCredentialsError:
        raise ToolError(f"{what}: no AWS credentials: configure a profile or role (in CI use OIDC)") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise ToolError(f"{what}: cannot reach AWS at {exc.kwargs.get('endpoint_url')}: check network/region") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "error")
        raise ToolError(f"{what}: {code}: {err.get('Message', '')}", code=code) from None
