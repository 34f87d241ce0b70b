"""EKS authentication as the control plane does it: a `k8s-aws-v1.` token to an IAM principal to a Kubernetes user.

The token format is aws-iam-authenticator's (https://github.com/kubernetes-sigs/aws-iam-authenticator,
README "How does it work?" and pkg/token/token.go): `k8s-aws-v1.` + unpadded base64url of a presigned
STS GetCallerIdentity URL whose signed headers include `x-k8s-aws-id: CLUSTER`. The server checks the
token, then asks STS who signed it. Here the simulation knows the secret of every credential it issued
(it assumed the role in moto for the caller), checks the SigV4 signature itself, and asks moto's STS for
the caller's ARN with those credentials: moto resolves assumed-role keys but does not read a presigned
query string, and checks no signature.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import urllib.parse
from dataclasses import dataclass

import boto3

TOKEN_PREFIX = "k8s-aws-v1."
# aws-iam-authenticator pkg/token/token.go: presignedURLExpiration = 15 * time.Minute, clusterIDHeader
MAX_AGE = datetime.timedelta(minutes=15)
CLUSTER_HEADER = "x-k8s-aws-id"
# SigV4 of a presigned GET: the payload hash is that of the empty body
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html, "HashedPayload")
EMPTY_PAYLOAD = hashlib.sha256(b"").hexdigest()
# STS's own host names only, global or regional (https://docs.aws.amazon.com/general/latest/gr/sts.html): the
# authenticator refuses any other host, scheme or path before it sends the URL anywhere (pkg/token/token.go,
# Verify: "unexpected scheme", "unexpected hostname", "unexpected path"), else a token could make EKS call a
# server of the caller's choosing that answers with any identity
STS_HOST = re.compile(r"^sts(?:\.[a-z]{2}(?:-[a-z]+)+-[0-9])?\.amazonaws\.com$")


class TokenRejected(Exception):
    """The token is not one EKS would accept (the message says why, as the authenticator logs it)."""


@dataclass(frozen=True)
class Caller:
    arn: str  # arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    access_key: str

    @property
    def session_name(self) -> str:
        return self.arn.rsplit("/", 1)[-1] if ":assumed-role/" in self.arn else ""

    @property
    def principal_arn(self) -> str:
        """The IAM principal an access entry names: an assumed role's session ARN -> its role ARN.

        https://docs.aws.amazon.com/eks/latest/userguide/access-entries.html ("the principal ARN ...
        of an IAM role", the session's ARN maps to its role; the role's path is not in the session ARN).
        """
        if ":assumed-role/" not in self.arn:
            return self.arn
        head, rest = self.arn.split(":assumed-role/", 1)
        return f"{head.replace(':sts::', ':iam::')}:role/{rest.rsplit('/', 1)[0]}"


@dataclass
class Credential:
    secret_key: str
    session_token: str


def _uri(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _signature(secret: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class EksTokenReviewer:
    """Verifies `k8s-aws-v1.` tokens for one cluster against the credentials the simulation issued."""

    def __init__(self, cluster: str, sts_endpoint: str) -> None:
        self.cluster = cluster
        self.sts_endpoint = sts_endpoint  # moto: the STS the tokens are presigned for
        self.credentials: dict[str, Credential] = {}

    def issue(self, role_arn: str, session_name: str) -> dict[str, str]:
        """Assume `role_arn` in moto (as GitHub's OIDC login would) and remember the keys' secret."""
        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        self.credentials[creds["AccessKeyId"]] = Credential(creds["SecretAccessKey"], creds["SessionToken"])
        return {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }

    def review(self, token: str, now: datetime.datetime | None = None) -> Caller:
        if not token.startswith(TOKEN_PREFIX):
            raise TokenRejected('token is missing expected "k8s-aws-v1." prefix')
        encoded = token[len(TOKEN_PREFIX) :]
        try:
            url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except ValueError:
            raise TokenRejected("could not base64 decode token") from None
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https":
            raise TokenRejected(f"unexpected scheme {parsed.scheme!r} in pre-signed URL")
        if not STS_HOST.match(parsed.netloc):
            raise TokenRejected(f"unexpected hostname {parsed.netloc!r} in pre-signed URL")
        if parsed.path != "/":
            raise TokenRejected("unexpected path in pre-signed URL")
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        # token.go: only GetCallerIdentity of version 2011-06-15, with the cluster-id header signed
        if query.get("Action") != "GetCallerIdentity" or query.get("Version") != "2011-06-15":
            raise TokenRejected("unexpected action or version parameter in pre-signed URL")
        signed = query.get("X-Amz-SignedHeaders", "").split(";")
        if CLUSTER_HEADER not in signed:
            raise TokenRejected(f"client did not sign the {CLUSTER_HEADER} header in the pre-signed URL")
        if signed != ["host", CLUSTER_HEADER]:
            raise TokenRejected(f"unexpected signed headers {signed}: the token carries only host and {CLUSTER_HEADER}")
        # The cluster id travels in the signature only: the authenticator re-signs with ITS cluster name,
        # so a token for another cluster fails the signature below (token.go: Verify adds the header itself).
        now = now or datetime.datetime.now(datetime.UTC)
        try:
            signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
            lifetime = datetime.timedelta(seconds=int(query["X-Amz-Expires"]))
        except (KeyError, ValueError):
            raise TokenRejected("X-Amz-Date or X-Amz-Expires missing or malformed") from None
        if now > signed_at + min(lifetime, MAX_AGE):  # STS honours X-Amz-Expires; EKS caps at 15 minutes
            raise TokenRejected("X-Amz-Date parameter is expired (15 minute expiration)")
        access_key, date, region, service, _ = query.get("X-Amz-Credential", "////").split("/", 4)
        credential = self.credentials.get(access_key)
        if credential is None or service != "sts":
            raise TokenRejected("InvalidClientTokenId: the security token included in the request is invalid")
        if query.get("X-Amz-Security-Token") != credential.session_token:
            raise TokenRejected("InvalidClientTokenId: the security token included in the request is invalid")
        canonical_query = "&".join(f"{_uri(k)}={_uri(v)}" for k, v in sorted(query.items()) if k != "X-Amz-Signature")
        canonical = "\n".join(
            [
                "GET",
                parsed.path or "/",
                canonical_query,
                f"host:{parsed.netloc}\n{CLUSTER_HEADER}:{self.cluster}\n",
                "host;" + CLUSTER_HEADER,
                EMPTY_PAYLOAD,
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        expected = _signature(credential.secret_key, date, region, service, to_sign)
        if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
            raise TokenRejected(
                "SignatureDoesNotMatch: the request signature does not match (a token for another cluster?)"
            )
        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=credential.secret_key,
            aws_session_token=credential.session_token,
        )
        return Caller(sts.get_caller_identity()["Arn"], access_key)
