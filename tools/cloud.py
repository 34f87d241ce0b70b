"""The cloud shim: the one place that knows how AWS, GCP and a plain local cluster differ.

Scripts ask a `Cloud` for names, annotations, drivers and chart values; they never branch on
the cloud themselves. Cloud SDKs (boto3, google-auth) are imported inside the methods that
talk to a cloud, so `--help` and `plan` never import them.
"""

from __future__ import annotations

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
                ecr.describe_repositories(repositoryNames=[name])
            except ecr.exceptions.RepositoryNotFoundException:
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


class GcpCloud(Cloud):
    name = "gcp"
    csi_driver = "gcsfuse.csi.storage.gke.io"
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


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials (no gcloud needed)."""
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.DefaultCredentialsError:
        raise ToolError(
            "no Google credentials: run `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS (in CI use google-github-actions/auth)"
        ) from None
    except google.auth.exceptions.RefreshError as exc:
        raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
    return credentials.token


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
        raise ToolError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', '')}") from None
