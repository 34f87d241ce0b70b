"""The cloud shim: the one place that knows how AWS, GCP and a plain local cluster differ.

`cloud_for(settings)` gives the provider for the settings' cloud. The interface and the names
are in `base`; each provider in a module of its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from tools.cloud.local import LocalCloud
from tools.settings import IMAGES, Settings

if TYPE_CHECKING:
    from tools.cloud.aws import AwsCloud
    from tools.cloud.ecr import ecr_repositories
    from tools.cloud.gcp import GcpCloud
    from tools.cloud.googleapi import google_access_token, google_credentials
    from tools.cloud.iam import trust_admits

# A provider's modules (boto3's calls, Google's APIs) load when a tool first names that provider: a local
# deploy, and every tool's start, do not pay for the other two (PEP 562 module __getattr__).
_LAZY = {
    "AwsCloud": "tools.cloud.aws",
    "GcpCloud": "tools.cloud.gcp",
    "ecr_repositories": "tools.cloud.ecr",
    "google_access_token": "tools.cloud.googleapi",
    "google_credentials": "tools.cloud.googleapi",
    "trust_admits": "tools.cloud.iam",
}
PROVIDER_CLASSES = {"aws": "AwsCloud", "gcp": "GcpCloud", "local": "LocalCloud"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def provider(cloud: str) -> type[Cloud]:
    """The Cloud class of `cloud` (aws, gcp or local)."""
    name = PROVIDER_CLASSES[cloud]
    found: type[Cloud] = globals()[name] if name in globals() else __getattr__(name)
    return found


def cloud_for(settings: Settings) -> Cloud:
    return provider(settings.cloud)(settings)


__all__ = [
    "BACKEND_SECRET",
    "BACKEND_SERVICE_ACCOUNT",
    "FRONTEND_SECRET",
    "IMAGES",
    "INGRESS_CONTROLLERS",
    "PROVIDER_CLASSES",
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
    "provider",
    "temporary_kubeconfig",
    "trust_admits",
    "user_bucket_prefix",
]
