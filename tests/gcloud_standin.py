"""A stand-in for the `gcloud` commands of the printed GCP set-up (`make cloud-setup CLOUD=gcp`), for tests.

No installable gcloud runs here. The bucket commands go to the GCS emulator of the test bed
(STORAGE_EMULATOR_HOST), so the order the script runs them in is held to a real bucket store:
- `storage buckets describe gs://B` fails when B does not exist;
- `storage buckets create gs://B` makes it (uniform access and public access prevention as asked;
  the emulator keeps them only on a patch, so they are patched after the create);
- `storage buckets add-iam-policy-binding gs://B` fails with 404 when B does not exist: a bucket's IAM
  policy is read and written on the bucket (https://cloud.google.com/storage/docs/json_api/v1/buckets/getIamPolicy,
  https://cloud.google.com/storage/docs/json_api/v1/status-codes#404-not-found).
`projects describe` prints a project number; every other command (IAM roles, project bindings, Workload
Identity) is appended to GCLOUD_LOG and succeeds: IAM's own evaluation cannot be staged offline.
"""

from __future__ import annotations

import os
import sys


def bucket_name(url: str) -> str:
    return url.removeprefix("gs://").rstrip("/")


def main(argv: list[str]) -> int:
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with open(os.environ["GCLOUD_LOG"], "a", encoding="utf-8") as log:
        log.write(" ".join(argv) + "\n")
    if argv[:2] == ["projects", "describe"]:
        print("123456789012")
        return 0
    if argv[:2] != ["storage", "buckets"]:
        return 0
    client = storage.Client(project="standin", credentials=AnonymousCredentials())
    verb, name = argv[2], bucket_name(argv[3])
    command = f"gcloud.storage.buckets.{verb}"
    if verb == "create":
        try:
            bucket = client.create_bucket(name)
        except exceptions.Conflict:
            print(f"ERROR: ({command}) HTTPError 409: The requested bucket name is not available.", file=sys.stderr)
            return 1
        bucket.iam_configuration.uniform_bucket_level_access_enabled = "--uniform-bucket-level-access" in argv
        bucket.iam_configuration.public_access_prevention = (
            "enforced" if "--public-access-prevention" in argv else "inherited"
        )
        bucket.patch()
        return 0
    if verb in ("describe", "add-iam-policy-binding"):
        if client.lookup_bucket(name) is None:
            print(f"ERROR: ({command}) HTTPError 404: The specified bucket does not exist.", file=sys.stderr)
            return 1
        return 0
    print(f"ERROR: ({command}) the stand-in does not know this command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
