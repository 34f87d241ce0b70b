"""S3: the deploy's buckets made and kept private, encrypted and versioned, and the storage check's
objects listed, read and removed."""

from __future__ import annotations

from typing import Any

from tools.cloud.awscall import aws_call
from tools.cloud.base import STORAGE_PREFIX, Cloud
from tools.cloud_permissions import need
from tools.errors import ToolError


def _smoke_bucket(cloud: Cloud) -> list[str]:
    return [f"arn:aws:s3:::{cloud.smoke_bucket}"]


def _storage_check_objects(cloud: Cloud) -> list[str]:
    return [f"arn:aws:s3:::{cloud.smoke_bucket}/{STORAGE_PREFIX}*"]


def _buckets(cloud: Cloud) -> list[str]:
    return [f"arn:aws:s3:::{cloud.database_bucket}", f"arn:aws:s3:::{cloud.smoke_bucket}"]


def _client_error_code(exc: Any) -> str | None:
    return exc.response.get("Error", {}).get("Code")


need("aws", "s3:ListBucketVersions", _smoke_bucket, "find what the storage check wrote",
     ("ListObjectVersions",))  # fmt: skip
need("aws", ("s3:DeleteObject", "s3:DeleteObjectVersion"), _storage_check_objects,
     "remove what the storage check wrote (every version)", ("DeleteObjects",))  # fmt: skip


def empty_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every version of the objects under `prefix` (the bucket is versioned); how many."""

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

    return aws_call(delete, f"S3 emptying the storage check's objects in {bucket}")


def keys(s3: Any, bucket: str, prefix: str, limit: int = 1) -> list[str]:
    """Up to `limit` keys under `prefix`; none when the bucket does not exist."""
    import botocore.exceptions  # heavy: only when a cloud is called

    def listing() -> list[str]:
        try:
            answer = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
        except botocore.exceptions.ClientError as exc:
            if _client_error_code(exc) == "NoSuchBucket":
                return []
            raise
        return [o["Key"] for o in answer.get("Contents") or []]

    return aws_call(listing, f"S3 listing s3://{bucket}/{prefix}")


def download(s3: Any, bucket: str, key: str, path: str) -> bool:
    """Whether the object was there (and is now at `path`)."""
    import botocore.exceptions  # heavy: only when a cloud is called

    def fetch() -> bool:
        try:
            s3.download_file(bucket, key, path)
        except botocore.exceptions.ClientError as exc:
            if _client_error_code(exc) in ("404", "NoSuchKey"):
                return False
            raise
        return True

    return aws_call(fetch, f"S3 downloading s3://{bucket}/{key}")


need("aws", "s3:ListBucket", _buckets,
     "head_bucket (does it exist, is it this account's); list the database bucket (preflight's backup state)",
     ("HeadBucket", "ListObjectsV2"))  # fmt: skip
need("aws", ("s3:CreateBucket", "s3:PutBucketOwnershipControls"), _buckets,
     "create the bucket with ObjectOwnership=BucketOwnerEnforced", ("CreateBucket",))  # fmt: skip


def ensure_bucket(s3: Any, name: str, region: str, account: str, dry_run: bool = False) -> str:
    """Make the bucket (this account's, owner-enforced) unless it exists, then secure it; what was done."""
    import botocore.exceptions  # heavy: only when a cloud is called

    def head() -> bool:
        try:
            s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
            return True
        except botocore.exceptions.ClientError as exc:
            code = _client_error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            if code in ("403", "AccessDenied", "Forbidden"):
                raise ToolError(
                    f"S3 bucket {name} exists but is not this account's ({account}) or may not be read by these "
                    "credentials: grant s3:ListBucket, or pick another CLUSTER_NAME if the name is taken"
                ) from None
            raise

    exists = aws_call(head, f"S3 head_bucket {name}")
    if not exists:
        if dry_run:
            return f"s3://{name} would be created (public access blocked, encrypted, versioned)"
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        aws_call(
            lambda: s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced", **config),
            f"S3 create_bucket {name}",
        )
    fixes = secure_bucket(s3, name, dry_run)
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


def secure_bucket(s3: Any, name: str, dry_run: bool) -> list[str]:
    """Read each security setting; write only the ones that are not as they must be."""
    import botocore.exceptions  # heavy: only when a cloud is called

    def current(call: Any, missing_code: str) -> Any:
        def read() -> Any:
            try:
                return call()
            except botocore.exceptions.ClientError as exc:
                if _client_error_code(exc) == missing_code:
                    return None
                raise

        return aws_call(read, f"S3 reading the settings of {name}")

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
            aws_call(settings[label][1], f"S3 enabling {label} on {name}")
    return fixes
