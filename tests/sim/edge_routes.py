"""One place for the network edge's map: a provider's real host name -> the test bed part that answers it.

Host names are the providers' documented endpoints:
- AWS service endpoints `SERVICE.REGION.amazonaws.com` and the global ones (`iam.amazonaws.com`,
  `route53.amazonaws.com`, `sts.amazonaws.com`): https://docs.aws.amazon.com/general/latest/gr/rande.html
- S3, path style and virtual-hosted style (`BUCKET.s3.REGION.amazonaws.com`):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html
- ECR's API `api.ecr.REGION.amazonaws.com` (https://docs.aws.amazon.com/general/latest/gr/ecr.html) and its
  registry `ACCOUNT.dkr.ecr.REGION.amazonaws.com`:
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html
- Artifact Registry's Docker hosts `LOCATION-docker.pkg.dev`:
  https://cloud.google.com/artifact-registry/docs/docker/names
- Cloud Storage's JSON API `storage.googleapis.com`: https://cloud.google.com/storage/docs/request-endpoints
- GKE's cluster API `container.googleapis.com`:
  https://cloud.google.com/kubernetes-engine/docs/reference/rest (service endpoint); Cloud DNS
  `dns.googleapis.com`: https://cloud.google.com/dns/docs/reference/rest/v1 ; Resource Manager
  `cloudresourcemanager.googleapis.com`: https://cloud.google.com/resource-manager/reference/rest
- Google's OAuth 2.0 token endpoint `oauth2.googleapis.com/token` (service-account key files name it as
  `token_uri`): https://developers.google.com/identity/protocols/oauth2/service-account#httprest

A part is named, not addressed: the proxy is given the parts' URLs (tests/sim/edge.py), so one chain
can point `eks` at tests/sim/eks_api.py while a test of its own leaves it on moto.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MOTO, EKS, ECR_REGISTRY, AR_REGISTRY, GCS, GOOGLE_TOKEN = "moto", "eks", "ecr", "artifact-registry", "gcs", "token"
# no part until a simulated GKE (and its project's Google APIs) is routed in (NetworkEdge.routed)
GKE, CLOUD_DNS, RESOURCE_MANAGER = "gke", "clouddns", "resourcemanager"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]"  # AWS: us-east-1, ap-southeast-2, us-gov-west-1
_LOCATION = r"(?:[a-z]+-[a-z]+[0-9]+|us|europe|asia)"  # Artifact Registry: us-central1, or a multi-region


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    part: str


def _route(pattern: str, part: str) -> Route:
    return Route(re.compile(rf"^{pattern}$"), part)


ROUTES = (
    _route(rf"\d{{12}}\.dkr\.ecr\.{_REGION}\.amazonaws\.com", ECR_REGISTRY),
    _route(rf"eks\.{_REGION}\.amazonaws\.com", EKS),
    _route(r"(?:sts|iam|route53)\.amazonaws\.com", MOTO),
    # ec2: the cluster VPC's subnets (https://docs.aws.amazon.com/general/latest/gr/ec2-service.html)
    _route(rf"(?:sts|api\.ecr|acm|elasticloadbalancing|cognito-idp|ec2)\.{_REGION}\.amazonaws\.com", MOTO),
    _route(rf"(?:[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]\.)?s3(?:\.{_REGION})?\.amazonaws\.com", MOTO),
    _route(rf"{_LOCATION}-docker\.pkg\.dev", AR_REGISTRY),
    _route(r"storage\.googleapis\.com", GCS),
    _route(r"oauth2\.googleapis\.com", GOOGLE_TOKEN),
    _route(r"container\.googleapis\.com", GKE),
    _route(r"dns\.googleapis\.com", CLOUD_DNS),
    _route(r"cloudresourcemanager\.googleapis\.com", RESOURCE_MANAGER),
)


def part_for(host: str) -> str | None:
    """The part that answers `host` (no port), or None: the edge refuses hosts it has no part for."""
    host = host.lower().rstrip(".")
    return next((r.part for r in ROUTES if r.pattern.match(host)), None)
