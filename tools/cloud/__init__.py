"""The cloud shim: the one place that knows how AWS, GCP and a plain local cluster differ.

`cloud_for(settings)` gives the provider for the settings' cloud. The interface and the names
are in `base`; each provider in a module of its own.
"""

from __future__ import annotations

from tools.cloud.aws import AwsCloud
from tools.cloud.base import (
    BACKEND_SECRET,
    BACKEND_SERVICE_ACCOUNT,
    FRONTEND_SECRET,
    INGRESS_CONTROLLERS,
    USER_ENV_PORT,
    USER_SERVICE_ACCOUNT,
    Cloud,
    Image,
    RegistryAuth,
    check_bucket_name,
    database_bucket_name,
    database_replica_url,
    temporary_kubeconfig,
    user_bucket_prefix,
)
from tools.cloud.ecr import ecr_repositories
from tools.cloud.gcp import GcpCloud
from tools.cloud.googleapi import google_access_token, google_credentials
from tools.cloud.iam import trust_admits
from tools.cloud.local import LocalCloud
from tools.settings import IMAGES, Settings

PROVIDERS: dict[str, type[Cloud]] = {"aws": AwsCloud, "gcp": GcpCloud, "local": LocalCloud}


def cloud_for(settings: Settings) -> Cloud:
    return PROVIDERS[settings.cloud](settings)


__all__ = [
    "BACKEND_SECRET",
    "BACKEND_SERVICE_ACCOUNT",
    "FRONTEND_SECRET",
    "IMAGES",
    "INGRESS_CONTROLLERS",
    "PROVIDERS",
    "USER_ENV_PORT",
    "USER_SERVICE_ACCOUNT",
    "AwsCloud",
    "Cloud",
    "GcpCloud",
    "Image",
    "LocalCloud",
    "RegistryAuth",
    "check_bucket_name",
    "cloud_for",
    "database_bucket_name",
    "database_replica_url",
    "ecr_repositories",
    "google_access_token",
    "google_credentials",
    "temporary_kubeconfig",
    "trust_admits",
    "user_bucket_prefix",
]
