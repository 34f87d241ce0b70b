"""GCP: GKE (REST API + google-auth, no gcloud), Artifact Registry, GCS FUSE CSI, Workload Identity."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from tools.cloud.base import Cloud, RegistryAuth, temporary_kubeconfig
from tools.cloud.clouddns import CloudDnsZone
from tools.cloud.googleapi import google_access_token, google_credentials, google_error, google_request
from tools.cloud_permissions import need, with_dns_zone
from tools.errors import ToolError
from tools.kube_client import KubeApi
from tools.report import REPORTER


def _project(cloud: GcpCloud) -> list[str]:
    return [f"projects/{cloud.settings['PROJECT_ID']}"]


def _buckets(cloud: GcpCloud) -> list[str]:
    return [f"projects/_/buckets/{cloud.database_bucket}", f"projects/_/buckets/{cloud.smoke_bucket}"]


# The custom role that lets the backend create (user) buckets, bound on the project without a condition:
# storage.buckets.create is a permission on the project, "Create new buckets in a project"
# (https://cloud.google.com/storage/docs/access-control/iam-permissions), and a condition on resource.name
# (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name) is documented for buckets
# and objects, not for a bucket that does not exist yet. What follows creation is held to the user-bucket prefix.
# GCS's evaluation cannot be staged offline (README, "Not verifiable offline").
USER_BUCKET_CREATOR_ROLE = "cmbclusterBucketCreator"

# The IAM permission preflight uses to read cert-manager's roles/dns.admin (only with DNS_ZONE).
DNS_PREFLIGHT_PERMISSIONS = ("resourcemanager.projects.getIamPolicy",)
need("gcp", DNS_PREFLIGHT_PERMISSIONS, with_dns_zone(_project), "preflight: cert-manager's roles/dns.admin for DNS-01")


class GcpCloud(Cloud):
    """The `need(...)` lines declare, beside each call, what the deploy identity may do (`make cloud-setup`)."""

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
        cert_manager: dict[str, Any] = {"email": self.settings["LETSENCRYPT_EMAIL"]}
        if self.settings["DNS_ZONE"]:  # DNS-01 through Cloud DNS: the only way to the users' wildcard
            cert_manager["cloudDNS"] = {"project": self.settings["PROJECT_ID"]}
        return {"className": self.ingress_class, "certManager": cert_manager}

    # -- DNS and certificates -------------------------------------------------------------------
    def dns_zone(self) -> Any | None:
        if not self.settings["DNS_ZONE"]:
            return None
        return CloudDnsZone(self.settings["DNS_ZONE"], self.settings["PROJECT_ID"])

    def ensure_certificate(self, *, dry_run: bool, timeout: float) -> tuple[str, str]:
        how = "DNS-01 through Cloud DNS" if self.settings["DNS_ZONE"] else "HTTP-01"
        return "skip", f"cert-manager issues the certificate in the cluster ({how}, the chart's Issuer)"

    def prerequisites(self, api: KubeApi) -> tuple[list[str], list[str]]:
        missing, unchecked = super().prerequisites(api)
        if not self.settings["DNS_ZONE"]:
            return missing, unchecked
        problem, not_checked = self.cert_manager_dns_role()
        return missing + ([problem] if problem else []), unchecked + ([not_checked] if not_checked else [])

    def cert_manager_dns_role(self) -> tuple[str | None, str | None]:
        """cert-manager answers DNS-01 in Cloud DNS as its own Google service account (Workload Identity):
        it needs roles/dns.admin on the project. Read from the project's IAM policy: (problem, not checked)."""
        import google.auth.exceptions
        import requests
        from google.auth.transport.requests import AuthorizedSession

        s = self.settings
        member = f"serviceAccount:{s['CERT_MANAGER_SERVICE_ACCOUNT_EMAIL']}"
        url = f"https://cloudresourcemanager.googleapis.com/v1/projects/{s['PROJECT_ID']}:getIamPolicy"
        try:
            response = AuthorizedSession(google_credentials()).post(url, json={}, timeout=30)
        except google.auth.exceptions.RefreshError as exc:
            raise ToolError(f"Google credentials were refused: {exc.args[0] if exc.args else exc}") from None
        except requests.RequestException as exc:
            why = f"cannot reach Resource Manager ({type(exc).__name__})"
            return None, f"cert-manager's roles/dns.admin not checked: {why}"
        if response.status_code != 200:
            return None, (
                f"cert-manager's roles/dns.admin not checked: reading the IAM policy of {s['PROJECT_ID']} answered "
                f"HTTP {response.status_code} (grant resourcemanager.projects.getIamPolicy to check it)"
            )
        bindings = response.json().get("bindings") or []
        if any(b.get("role") == "roles/dns.admin" and member in (b.get("members") or []) for b in bindings):
            return None, None
        return (
            f"{member} (cert-manager, CERT_MANAGER_SERVICE_ACCOUNT_EMAIL) lacks roles/dns.admin on project "
            f"{s['PROJECT_ID']}: DNS-01 for *.{s['BASE_DOMAIN']} cannot be answered; gcloud projects "
            f"add-iam-policy-binding {s['PROJECT_ID']} --member {member} --role roles/dns.admin",
            None,
        )

    # `docker push` (the build_push step, with the login below) and the registry client (tools/registry.py)
    need(
        "gcp",
        ("artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.uploadArtifacts",
         "artifactregistry.tags.create", "artifactregistry.tags.update"),
        _project,
        "docker push, read a digest, add a release tag (Artifact Registry)",
    )  # fmt: skip

    def registry_login(self) -> RegistryAuth:
        token = google_access_token()
        REPORTER.register_secrets([token])
        return RegistryAuth(self.registry().split("/")[0], "oauth2accesstoken", token)

    # -- cluster access (no gcloud: the GKE REST API + a google-auth access token) ---------------
    need("gcp", "container.clusters.get", _project, "the cluster's endpoint and CA (Kubernetes rights: `make rbac`)")

    @contextmanager
    def cluster_access(self) -> Iterator[str]:
        from google.auth.transport.requests import AuthorizedSession

        s = self.settings
        credentials = google_credentials()
        path = f"projects/{s['PROJECT_ID']}/locations/{s['GKE_LOCATION']}/clusters/{s.cluster_name}"
        url = f"https://container.googleapis.com/v1/{path}"
        response = google_request(AuthorizedSession(credentials), "GET", url, "GKE reading the cluster")
        if response.status_code == 404:
            raise ToolError(
                f"GKE cluster {s.cluster_name} not found in {s['PROJECT_ID']}/{s['GKE_LOCATION']}: "
                "check CLUSTER_NAME, PROJECT_ID and GKE_LOCATION"
            )
        if response.status_code == 403:
            raise ToolError(
                f"these Google credentials may not read GKE cluster {path}: grant container.clusters.get (the deploy "
                "role `make cloud-setup CLOUD=gcp` prints holds it; rights inside come from `make rbac`) and enable "
                "the Kubernetes Engine API"
            )
        if response.status_code != 200:
            raise ToolError(f"GKE API answered HTTP {response.status_code} for {path}: {google_error(response)}")
        cluster = response.json()
        if not cluster.get("endpoint"):
            raise ToolError(f"GKE cluster {path} has no endpoint yet (status {cluster.get('status')}): wait and retry")
        ca = (cluster.get("masterAuth") or {}).get("clusterCaCertificate", "")
        name = f"gke_{s['PROJECT_ID']}_{s['GKE_LOCATION']}_{s.cluster_name}"
        with temporary_kubeconfig(name, f"https://{cluster['endpoint']}", ca, credentials.token) as kubeconfig:
            yield kubeconfig

    # -- database bucket -----------------------------------------------------------------------
    @property
    def smoke_bucket(self) -> str:
        return f"{self.user_bucket_prefix}-smoke-{self.settings['PROJECT_ID']}"  # names are global in GCS

    need("gcp", ("storage.objects.list", "storage.objects.delete"), lambda c: _buckets(c)[1:],
         "remove what the storage check wrote")  # fmt: skip

    def empty_storage_check(self, bucket: str, prefix: str) -> int:
        from google.api_core import exceptions

        try:
            blobs = list(self._storage_client().list_blobs(bucket, prefix=prefix))
            for blob in blobs:
                blob.delete()
        except exceptions.GoogleAPIError as exc:
            raise ToolError(f"GCS: emptying the storage check's objects in gs://{bucket}: {exc}") from None
        return len(blobs)

    need("gcp", "storage.objects.list", lambda c: _buckets(c)[:1], "preflight: does the database bucket hold a replica")

    def bucket_keys(self, bucket: str, prefix: str, limit: int = 1) -> list[str]:
        from google.api_core import exceptions

        try:
            return [b.name for b in self._storage_client().list_blobs(bucket, prefix=prefix, max_results=limit)]
        except exceptions.NotFound:
            return []
        except exceptions.GoogleAPIError as exc:
            raise ToolError(f"GCS: listing gs://{bucket}/{prefix}: {exc}") from None

    def download(self, bucket: str, key: str, path: str) -> bool:
        from google.api_core import exceptions

        try:
            self._storage_client().bucket(bucket).blob(key).download_to_filename(path)
        except exceptions.NotFound:
            return False
        except exceptions.GoogleAPIError as exc:
            raise ToolError(f"GCS: downloading gs://{bucket}/{key}: {exc}") from None
        return True

    def workload_policies(self) -> list[tuple[str, str]]:
        s = self.settings
        project, backend, user = s["PROJECT_ID"], s["GCP_SERVICE_ACCOUNT_EMAIL"], s["GCP_USER_SERVICE_ACCOUNT_EMAIL"]
        users = f"resource.name.startsWith('projects/_/buckets/{self.user_bucket_prefix}-')"
        database = f"gs://{self.database_bucket}"
        backend_commands = "\n".join(
            [
                "# Litestream's replica in the database bucket, bound on the bucket: made here first (private,",
                "# uniform) when missing, since a binding on a bucket that does not exist fails (HTTP 404)",
                f"gcloud storage buckets describe {database} --project {project} >/dev/null 2>&1 || "
                f"gcloud storage buckets create {database} --project {project} --location {s['REGION']} "
                "--uniform-bucket-level-access --public-access-prevention",
                f"gcloud storage buckets add-iam-policy-binding {database} "
                f"--member=serviceAccount:{backend} --role=roles/storage.objectUser",
                "# making each user's bucket: storage.buckets.create is checked on the project, where no bucket",
                "# name exists yet for a condition to match, so it is a role of its own on the project",
                f"gcloud iam roles create {USER_BUCKET_CREATOR_ROLE} --project {project} "
                f'--title "CMBCluster: create buckets" --permissions storage.buckets.create || '
                f"gcloud iam roles update {USER_BUCKET_CREATOR_ROLE} --project {project} "
                "--permissions storage.buckets.create",
                f"gcloud projects add-iam-policy-binding {project} --member=serviceAccount:{backend} "
                f"--role=projects/{project}/roles/{USER_BUCKET_CREATOR_ROLE} --condition=None",
                "# managing and using each user's bucket once made (the user-bucket name pattern only)",
                f"gcloud projects add-iam-policy-binding {project} --member=serviceAccount:{backend} "
                f'--role=roles/storage.admin --condition="title=cmbcluster-user-buckets,expression={users}"',
            ]
        )
        user_commands = "\n".join(
            [
                "# the user buckets' name pattern only",
                f"gcloud projects add-iam-policy-binding {project} --member=serviceAccount:{user} "
                f'--role=roles/storage.objectUser --condition="title=cmbcluster-user-buckets,expression={users}"',
            ]
        )
        return [(f"{backend} (the backend)", backend_commands), (f"{user} (user pods)", user_commands)]

    # Creating a bucket is checked on the project (https://cloud.google.com/storage/docs/access-control/iam-permissions:
    # storage.buckets.create "Create new buckets in a project"); reading and changing it, on the bucket.
    need("gcp", "storage.buckets.create", _project, "create the database and smoke buckets")
    need("gcp", ("storage.buckets.get", "storage.buckets.update"), _buckets,
         "keep the database and smoke buckets private (uniform access, public access prevention)")  # fmt: skip

    def ensure_bucket(self, name: str, dry_run: bool = False) -> str:
        from google.api_core import exceptions

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
        from google.cloud import storage

        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            if self.settings.environment != "dev":
                raise ToolError(
                    f"STORAGE_EMULATOR_HOST={emulator} is set: GCS calls would go to an emulator with anonymous "
                    f"credentials, not to Google: unset it (or set ENVIRONMENT=dev for a test run)"
                )
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=self.settings["PROJECT_ID"], credentials=AnonymousCredentials())
        return storage.Client(project=self.settings["PROJECT_ID"], credentials=google_credentials())
