"""The database bucket behind the shim, against moto (S3) and the GCS emulator: created private and
encrypted, an existing one secured without losing an object, never deleted or emptied, and
--dry-run changes nothing.

The GCS emulator ignores iamConfiguration when a bucket is created but keeps it on a patch;
the shim reads every bucket back and patches what is missing, so the settings checked here
are the ones the shim enforced (on real GCS the create already sets them)."""

from __future__ import annotations

import uuid

import pytest

from tests.envfiles import good_env
from tests.test_cluster_access import fresh_boto3_session  # noqa: F401 - autouse: no cached AWS credentials
from tools.cloud import AwsCloud, GcpCloud, LocalCloud
from tools.settings import load_settings

pytestmark = pytest.mark.testbed
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def aws() -> AwsCloud:
    cluster = f"cmb{uuid.uuid4().hex[:8]}"
    return AwsCloud(load_settings(cloud="aws", environ=good_env("aws", CLUSTER_NAME=cluster)))


def gcp() -> GcpCloud:
    cluster = f"cmb{uuid.uuid4().hex[:8]}"
    # the emulator is honoured only in dev: elsewhere STORAGE_EMULATOR_HOST is refused
    return GcpCloud(load_settings(cloud="gcp", environ=good_env("gcp", CLUSTER_NAME=cluster, ENVIRONMENT="dev")))


def s3_state(name: str) -> dict[str, object]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    return {
        "block": s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"],
        "encryption": s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0][
            "ApplyServerSideEncryptionByDefault"
        ]["SSEAlgorithm"],
        "versioning": s3.get_bucket_versioning(Bucket=name).get("Status"),
    }


def test_s3_bucket_is_created_private_encrypted_and_versioned(moto_url, bed_env):
    cloud = aws()
    assert cloud.database_bucket.endswith("-db-123456789012")
    assert (
        cloud.ensure_database_bucket()
        == f"s3://{cloud.database_bucket} created (public access blocked, encrypted, versioned)"
    )
    assert s3_state(cloud.database_bucket) == {"block": BLOCK_ALL, "encryption": "AES256", "versioning": "Enabled"}
    assert (
        cloud.ensure_database_bucket()
        == f"s3://{cloud.database_bucket} exists (public access blocked, encrypted, versioned)"
    )


def test_an_existing_s3_bucket_is_secured_and_keeps_its_objects(moto_url, bed_env):
    import boto3

    cloud = aws()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=cloud.database_bucket)
    s3.put_object(Bucket=cloud.database_bucket, Key="cmbcluster.db", Body=b"the users' data")

    dry = cloud.ensure_database_bucket(dry_run=True)
    assert dry.endswith("would enable public access block, default encryption, versioning")
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_public_access_block(Bucket=cloud.database_bucket)  # the dry run changed nothing

    done = cloud.ensure_database_bucket()
    assert done == f"s3://{cloud.database_bucket} exists; enabled public access block, default encryption, versioning"
    assert s3_state(cloud.database_bucket) == {"block": BLOCK_ALL, "encryption": "AES256", "versioning": "Enabled"}
    assert s3.get_object(Bucket=cloud.database_bucket, Key="cmbcluster.db")["Body"].read() == b"the users' data"


def test_s3_dry_run_creates_nothing(moto_url, bed_env):
    import boto3

    cloud = aws()
    assert "would be created" in cloud.ensure_database_bucket(dry_run=True)
    names = [b["Name"] for b in boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"]]
    assert cloud.database_bucket not in names


def gcs_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="cmb-project", credentials=AnonymousCredentials())


def gcs_iam(name: str) -> dict[str, object]:
    iam = gcs_client().get_bucket(name).iam_configuration
    return {
        "uniform": iam.uniform_bucket_level_access_enabled,
        "public_access_prevention": iam.public_access_prevention,
    }


def test_gcs_bucket_has_uniform_access_and_public_access_prevention(gcs_url, bed_env):
    cloud = gcp()
    assert cloud.database_bucket.startswith("cmb-project-")
    created = cloud.ensure_database_bucket()
    assert created == f"gs://{cloud.database_bucket} created (uniform bucket-level access, public access prevention)"
    assert gcs_iam(cloud.database_bucket) == {"uniform": True, "public_access_prevention": "enforced"}
    again = cloud.ensure_database_bucket()
    assert again == f"gs://{cloud.database_bucket} exists (uniform bucket-level access, public access prevention)"


def test_an_existing_gcs_bucket_is_secured_and_keeps_its_objects(gcs_url, bed_env):
    cloud = gcp()
    bucket = gcs_client().create_bucket(cloud.database_bucket)
    bucket.blob("cmbcluster.db").upload_from_string(b"the users' data")
    assert cloud.ensure_database_bucket(dry_run=True).endswith(
        "would enable uniform bucket-level access, public access prevention"
    )
    assert gcs_iam(cloud.database_bucket)["uniform"] is False  # the dry run changed nothing
    assert cloud.ensure_database_bucket().endswith("enabled uniform bucket-level access, public access prevention")
    assert gcs_iam(cloud.database_bucket) == {"uniform": True, "public_access_prevention": "enforced"}
    assert gcs_client().bucket(cloud.database_bucket).blob("cmbcluster.db").download_as_bytes() == b"the users' data"


def test_gcs_dry_run_creates_nothing(gcs_url, bed_env):
    cloud = gcp()
    assert "would be created" in cloud.ensure_database_bucket(dry_run=True)
    assert gcs_client().lookup_bucket(cloud.database_bucket) is None


def test_local_needs_no_bucket():
    cloud = LocalCloud(load_settings(cloud="local", environ=good_env("local")))
    assert "PersistentVolumeClaim" in cloud.ensure_database_bucket()


def test_the_gcs_emulator_is_refused_outside_dev(gcs_url, bed_env):
    """STORAGE_EMULATOR_HOST left in a production shell would send the database bucket's calls to
    an emulator with anonymous credentials: a clear error, not a silent switch."""
    from tools.errors import ToolError

    production = GcpCloud(load_settings(cloud="gcp", environ=good_env("gcp")))
    with pytest.raises(ToolError, match=r"STORAGE_EMULATOR_HOST=http://127\.0\.0\.1:\d+ is set: GCS calls would go"):
        production.ensure_database_bucket()


# -- the smoke test's user bucket -------------------------------------------------------------------
def test_the_smoke_bucket_is_a_user_bucket_made_once_and_emptied_after(moto_url, bed_env):
    """The storage check mounts a bucket as the user identity: one named by the user-bucket rule
    (CLUSTER-user-*, what the user role may reach), never the database's; what it wrote goes."""
    import boto3

    cloud = aws()
    name = cloud.smoke_bucket
    assert name.startswith(f"{cloud.user_bucket_prefix}-") and name != cloud.database_bucket
    assert cloud.ensure_smoke_bucket().startswith(f"s3://{name} created")
    assert cloud.ensure_smoke_bucket().startswith(f"s3://{name} exists")  # a second run changes nothing
    s3 = boto3.client("s3", region_name="us-east-1")
    blocks = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(blocks.values())
    for body in (b"first", b"saved again"):  # two versions, as the check's overwrite leaves
        s3.put_object(Bucket=name, Key=".cmbcluster-storage-check-abc", Body=body)
    s3.put_object(Bucket=name, Key="users-data.txt", Body=b"keep")
    assert cloud.empty_storage_check(name, ".cmbcluster-storage-check-") == 2
    assert [o["Key"] for o in s3.list_object_versions(Bucket=name).get("Versions", [])] == ["users-data.txt"]


def test_the_gcs_smoke_bucket_is_made_once_and_emptied_after(gcs_url, bed_env):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    cloud = gcp()
    name = cloud.smoke_bucket
    assert name.startswith(f"{cloud.user_bucket_prefix}-") and name != cloud.database_bucket
    assert cloud.ensure_smoke_bucket().startswith(f"gs://{name} created")
    assert cloud.ensure_smoke_bucket().startswith(f"gs://{name} exists")
    bucket = storage.Client(project="cmb-project", credentials=AnonymousCredentials()).bucket(name)
    bucket.blob(".cmbcluster-storage-check-abc").upload_from_string(b"x")
    bucket.blob("users-data.txt").upload_from_string(b"keep")
    assert cloud.empty_storage_check(name, ".cmbcluster-storage-check-") == 1
    assert [b.name for b in bucket.client.list_blobs(name)] == ["users-data.txt"]
