"""The stand-in bucket drivers' rules (tests/sim/csi_rules.py) case by case, without a cluster; the
kubelet's path through them is tests/test_sim_csi.py. The request's fields are the chart's
(tools/cloud: the AWS PV's mountOptions and attributes, GCS FUSE's inline attributes)."""

from __future__ import annotations

import pytest

from tests.envfiles import good_env
from tests.sim.csi_rules import EPHEMERAL, GCSFUSE, MOUNTPOINT, TOKENS, Refused, check_sidecar, plan
from tools.cloud import AwsCloud, GcpCloud
from tools.settings import load_settings

RWX = "MULTI_NODE_MULTI_WRITER"


def aws_options() -> list[str]:
    cloud = AwsCloud(load_settings(cloud="aws", environ=good_env("aws")))
    return cloud.storage_values()["aws"]["mountOptions"]


def gcp_options() -> str:
    cloud = GcpCloud(load_settings(cloud="gcp", environ=good_env("gcp")))
    return ",".join(cloud.storage_values()["gcp"]["mountOptions"])


def s3(context: dict[str, str], flags: list[str] | None = None, mode: str = RWX, readonly: bool = False):
    base = {"bucketName": "b", "authenticationSource": "pod", TOKENS: "{}"}
    return plan(MOUNTPOINT, {**base, **context}, aws_options() if flags is None else flags, mode, False, readonly)


def test_the_charts_settings_mount_as_the_app_user() -> None:
    aws = s3({})
    assert (aws.bucket, aws.uid, aws.gid, aws.read_only) == ("b", 1000, 1000, False)
    gcs = plan(GCSFUSE, {"bucketName": "g", "mountOptions": gcp_options()}, [], "SINGLE_NODE_WRITER", False, False)
    assert (gcs.bucket, gcs.uid, gcs.gid, gcs.dir_mode) == ("g", 1000, 1000, 0o775)


@pytest.mark.parametrize(
    ("context", "flags", "mode", "message"),
    [
        ({"bucketName": ""}, None, RWX, "bucketName is missing"),
        ({"authenticationSource": "secret"}, None, RWX, "unsupported authenticationSource 'secret'"),
        ({TOKENS: ""}, None, RWX, "service account token is missing"),
        ({EPHEMERAL: "true"}, None, RWX, "static provisioning"),
        ({}, None, "SINGLE_NODE_WRITER", "access mode SINGLE_NODE_WRITER"),
        ({}, ["allow-delete", "--cache-everything"], RWX, "unexpected argument '--cache-everything'"),
        ({}, ["region"], RWX, "a value is required for '--region <REGION>'"),
        ({}, ["allow-delete=yes"], RWX, "unexpected value 'yes' for '--allow-delete'"),
        ({}, ["uid=alice"], RWX, "uid='alice' is not a number"),
    ],
)
def test_mountpoint_refuses_what_the_driver_refuses(context, flags, mode, message) -> None:
    with pytest.raises(Refused, match=message):
        s3(context, flags, mode)


def test_mountpoint_reads_flags_in_each_written_form() -> None:
    mount = s3({}, ["--uid 1001", "gid=1002", "read-only", "region eu-west-1", "allow-delete,allow-other"])
    assert (mount.uid, mount.gid, mount.read_only) == (1001, 1002, True)
    assert s3({}, [], "MULTI_NODE_READER_ONLY", readonly=True).read_only


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"mountOptions": "implicit-dirs,key-file=/k.json"}, "'key-file' is disallowed"),
        ({"mountOptions": "implicit-dirs,temp-dir=/tmp"}, "'temp-dir' is disallowed"),
        ({"mountOptions": "implicit-dirs,no-such-flag"}, "unknown flag: --no-such-flag"),
        ({"skipCSIBucketAccessCheck": "maybe"}, "skipCSIBucketAccessCheck must be true or false"),
        ({"mountOptions": "uid=alice"}, "uid='alice' is not a number"),
    ],
)
def test_gcs_fuse_refuses_what_the_driver_refuses(context, message) -> None:
    with pytest.raises(Refused, match=message):
        plan(GCSFUSE, {"bucketName": "g", **context}, [], "SINGLE_NODE_WRITER", False, False)


def test_gcs_fuse_passes_config_file_options_and_needs_the_sidecar_annotation() -> None:
    mount = plan(GCSFUSE, {"bucketName": "g", "mountOptions": "metadata-cache:ttl-secs:-1"}, [], "", False, True)
    assert mount.read_only
    check_sidecar({"gke-gcsfuse/volumes": "true"})
    with pytest.raises(Refused, match="failed to find the sidecar container"):
        check_sidecar({"gke-gcsfuse/volumes": "false"})


def test_both_refuse_block_volumes() -> None:
    for driver in (MOUNTPOINT, GCSFUSE):
        with pytest.raises(Refused, match="block volumes are not supported"):
            plan(driver, {"bucketName": "b"}, [], RWX, True, False)
