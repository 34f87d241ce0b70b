"""The cloud shim's interface: what every provider answers, and the names that follow from settings.

Scripts ask a `Cloud` for names, annotations, drivers and chart values; they never branch on
the cloud themselves. Each provider lives in a module of its own (aws, gcp, local); cloud SDKs
are imported inside the methods that talk to a cloud, so `--help` and `plan` never import them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from tools import kube_ops
from tools.errors import ToolError
from tools.kube_client import KubeApi
from tools.report import REPORTER
from tools.settings import IMAGES, Settings

USER_SERVICE_ACCOUNT = "cmbcluster-user-sa"
BACKEND_SERVICE_ACCOUNT = "cmbcluster-ksa"
BACKEND_SECRET = "cmbcluster-backend-secrets"
FRONTEND_SECRET = "cmbcluster-frontend-secrets"
USER_ENV_PORT = 8888
# The app's SQLite file (/app/data/cmbcluster.db), and where its Litestream replica lives in the
# database bucket (apart from the file the old FUSE mount left at the bucket's root).
DATABASE_FILE = "cmbcluster.db"
DATABASE_REPLICA_PATH = f"litestream/{DATABASE_FILE}"
# What the smoke test's storage check writes into the smoke bucket, and the cloud empties from it afterwards
STORAGE_PREFIX = ".cmbcluster-storage-check-"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# What creates each ingress class the chart may use.
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


def database_replica_url(cloud: str, bucket: str) -> str:
    """Where Litestream keeps the database's replica: "" on a cloud with no database bucket.
    The chart's `cmbcluster.databaseReplicaUrl` helper says the same."""
    scheme = {"aws": "s3", "gcp": "gs"}.get(cloud)
    return f"{scheme}://{bucket}/{DATABASE_REPLICA_PATH}" if scheme else ""


def user_bucket_prefix(cluster_name: str) -> str:
    return f"{cluster_name}-user"


def check_bucket_name(name: str) -> str | None:
    """Why `name` is not a valid S3/GCS bucket name, or None."""
    if not _BUCKET.match(name) or "--" in name:
        return f"bucket name {name!r} is invalid (3-63 lowercase letters, digits, single hyphens)"
    return None


def split_image(reference: str) -> tuple[str, str, str]:
    """`registry/repo[:tag][@digest]` as (repository, tag, digest); a port is not a tag."""
    rest, _, digest = reference.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return rest, "", digest
    return name, tag, digest


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
    renames_files: ClassVar[bool] = True  # a user bucket's mount can rename a file (not Mountpoint for S3)
    # The provisioner the database's StorageClass must use ("" = any), and how to get it
    block_provisioner: ClassVar[str] = ""
    block_provisioner_install: ClassVar[str] = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- names ---------------------------------------------------------------------------
    @property
    def database_bucket(self) -> str:
        s = self.settings
        return database_bucket_name(self.name, s.cluster_name, s["PROJECT_ID"], s["AWS_ACCOUNT_ID"])

    @property
    def database_replica(self) -> str:
        return database_replica_url(self.name, self.database_bucket)

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

    def ensure_bucket(self, name: str, dry_run: bool = False) -> str | None:
        """Make sure bucket `name` exists, private and encrypted; never deletes or empties one.

        Returns what was done (or would be, with `dry_run`), for the report; None on a cloud
        with no buckets.
        """
        return None

    def ensure_database_bucket(self, dry_run: bool = False) -> str:
        done = self.ensure_bucket(self.database_bucket, dry_run)
        return done or "none needed (the database lives on a PersistentVolumeClaim)"

    @property
    def smoke_bucket(self) -> str:
        """The bucket the smoke test's storage check mounts as a user: one of the user buckets (its
        name follows their rule, so the user identity may reach it), never the database's."""
        return ""

    def ensure_smoke_bucket(self) -> str:
        return self.ensure_bucket(self.smoke_bucket) or "none needed (no bucket on this cloud)"

    def empty_storage_check(self, bucket: str, prefix: str) -> int:
        """Delete what the storage check left under `prefix` in `bucket`; returns how many objects."""
        return 0

    def bucket_keys(self, bucket: str, prefix: str, limit: int = 1) -> list[str]:
        """Up to `limit` object names under `prefix` in `bucket`; none when the bucket does not exist
        (yet) or the cloud has no buckets."""
        return []

    def download(self, bucket: str, key: str, path: str) -> bool:
        """Copy object `key` to the file `path`; False when there is no such object."""
        return False

    def prerequisites(self, api: KubeApi) -> tuple[list[str], list[str]]:
        """What the cluster (or the cloud account) lacks for the chart, and what could not be checked.

        `api` is a `tools.kube_client.Kube` for the target cluster. Checks the CSI driver of this
        cloud's bucket mounts and the ingress class the chart uses. Returns (missing, unchecked),
        one line each saying what to install, or why it was not checked (a cluster-scoped read
        that a namespace-scoped identity may not do).
        """
        missing: list[str] = []
        unchecked: list[str] = []
        wanted = []
        if self.csi_driver:
            problem = f"CSIDriver {self.csi_driver} is not installed: {self.csi_driver_install}"
            wanted.append(("csidrivers", self.csi_driver, f"CSIDriver {self.csi_driver}", problem))
        hint = INGRESS_CONTROLLERS.get(self.ingress_class)
        if hint:
            problem = f"IngressClass {self.ingress_class} does not exist: {hint}"
            wanted.append(("ingressclasses", self.ingress_class, f"IngressClass {self.ingress_class}", problem))
        if self.block_provisioner:
            problem = f"CSIDriver {self.block_provisioner} is not installed: {self.block_provisioner_install}"
            wanted.append(("csidrivers", self.block_provisioner, f"CSIDriver {self.block_provisioner}", problem))
        for resource, name, what, problem in wanted:
            found = kube_ops.read_cluster_object(api, resource, name, what)
            if found is None:
                unchecked.append(
                    f"{what} not checked: these credentials may not read it (cluster scope); "
                    "the deploy goes on, make sure a cluster admin installed it"
                )
            elif not found:
                missing.append(problem)
        class_problem, unreadable = self.database_class_problem(api)
        missing += [class_problem] if class_problem else []
        unchecked += [unreadable] if unreadable else []
        return missing, unchecked

    def database_class_problem(self, api: KubeApi) -> tuple[str | None, str | None]:
        """The database's claim binds only through a StorageClass: the one named in the settings, else
        the cluster's default; on EKS it must provision with the EBS CSI driver. (problem, unchecked)."""
        named = self.settings["DATABASE_STORAGE_CLASS"]
        what = f"StorageClass {named}" if named else "the default StorageClass"
        classes = kube_ops.read_cluster_objects(api, "storageclasses", what, named or None)
        if classes is None:
            return None, f"{what} not checked: these credentials may not read StorageClasses (cluster scope)"
        default = "storageclass.kubernetes.io/is-default-class"
        chosen = (
            classes
            if named
            else [c for c in classes if (c["metadata"].get("annotations") or {}).get(default) == "true"]
        )
        if not chosen:
            fix = "kubectl get storageclass" + (f"; {self.block_provisioner_install}" if self.block_provisioner else "")
            if named:
                return f"StorageClass {named} (DATABASE_STORAGE_CLASS) does not exist: name one of `{fix}`", None
            return f"the cluster has no default StorageClass for the database: set DATABASE_STORAGE_CLASS ({fix})", None
        provisioner = chosen[0].get("provisioner", "")
        if self.block_provisioner and provisioner != self.block_provisioner:
            name = chosen[0]["metadata"]["name"]
            return (
                f"StorageClass {name} provisions with {provisioner}, not {self.block_provisioner}: create a class "
                f"with provisioner {self.block_provisioner} (e.g. gp3) and set DATABASE_STORAGE_CLASS to it",
                None,
            )
        return None, None

    # -- DNS and certificates --------------------------------------------------------------
    @property
    def dns_owner(self) -> str:
        """Who owns the DNS records and certificate requests this deploy makes (their ownership tag)."""
        s = self.settings
        return f"{s.cluster_name}/{s.namespace}/{s.release}"

    def dns_zone(self) -> Any | None:
        """DNS_ZONE on this cloud's DNS service (records, changes, the record for an address); None when
        the toolkit makes no records here (no DNS_ZONE, or a local cluster)."""
        return None

    def ensure_certificate(self, *, dry_run: bool, timeout: float) -> tuple[str, str]:
        """Make sure the Ingress has a certificate for BASE_DOMAIN and *.BASE_DOMAIN: (status, what happened)."""
        return "skip", "no managed certificate on a local cluster: the chart's TLS Secret or cert-manager serves"

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
        storage = self.storage_values()
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
            **({"storage": storage} if storage else {}),
            "database": self.database_values(),
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

    def workload_policies(self) -> list[tuple[str, str]]:
        """What a cloud admin grants the backend's and the user pods' identities, least privilege:
        (title, text to apply) pairs. The README shows them for the example settings."""
        return []

    def access_hint(self, namespace: str) -> str:
        """How this cloud grants a deploy identity Kubernetes rights (appended to preflight's refusal)."""
        return ""

    def deploy_values(self) -> dict[str, Any]:
        """Chart values read from the cloud at deploy time (plan has no cloud access and leaves them out)."""
        return {}

    def storage_values(self) -> dict[str, Any]:
        return {self.name: {"driver": self.csi_driver, "mountOptions": list(self.mount_options)}}

    def database_values(self) -> dict[str, Any]:
        """The database volume, and the Litestream image that backs it up to the database bucket."""
        s = self.settings
        values: dict[str, Any] = {"size": s["DATABASE_SIZE"], "storageClassName": s["DATABASE_STORAGE_CLASS"]}
        if s["LITESTREAM_IMAGE"]:
            repository, tag, digest = split_image(s["LITESTREAM_IMAGE"])
            values["backup"] = {"image": {"repository": repository, "tag": tag, "digest": digest}}
        return values

    def ingress_values(self) -> dict[str, Any]:
        return {"className": self.ingress_class}


@contextmanager
def temporary_kubeconfig(
    name: str, server: str, ca_data: str, token: str = "", user: dict[str, Any] | None = None
) -> Iterator[str]:
    """A kubeconfig with one cluster, user and context: mode 0600 in a private temporary folder,
    removed with the folder when the block ends, whatever happens in it. The user is a bearer
    `token`, or `user` as given (e.g. an exec credential plugin that renews its token)."""
    import shutil  # with tempfile and yaml: only when a kubeconfig is written, never for --help
    import tempfile

    import yaml

    if token:
        REPORTER.register_secrets([token])
    cluster: dict[str, str] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user or {"token": token}}],
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
