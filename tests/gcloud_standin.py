"""A stand-in for the `gcloud` commands of the printed GCP set-up (`make cloud-setup CLOUD=gcp`), for tests.

No installable gcloud runs here. The bucket commands go to the GCS emulator of the test bed
(STORAGE_EMULATOR_HOST), so the order the script runs them in is held to a real bucket store:
- `storage buckets describe gs://B` fails when B does not exist;
- `storage buckets create gs://B` makes it (uniform access and public access prevention as its flags
  ask; the emulator keeps them only on a patch, so they are patched after the create);
- `storage buckets add-iam-policy-binding gs://B` fails with 404 when B does not exist: a bucket's IAM
  policy is read and written on the bucket (https://cloud.google.com/storage/docs/json_api/v1/buckets/getIamPolicy,
  https://cloud.google.com/storage/docs/json_api/v1/status-codes#404-not-found).
`projects describe` prints a project number; every other command (IAM roles, project bindings, Workload
Identity) is appended to GCLOUD_LOG and succeeds: IAM's own evaluation cannot be staged offline.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def storage(method: str, path: str, body: dict | None = None) -> int:
    """One call to the emulator's JSON API (https://cloud.google.com/storage/docs/json_api): its HTTP status."""
    url = f"{os.environ['STORAGE_EMULATOR_HOST'].rstrip('/')}/storage/v1/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main(argv: list[str]) -> int:
    with open(os.environ["GCLOUD_LOG"], "a", encoding="utf-8") as log:
        log.write(" ".join(argv) + "\n")
    if argv[:2] == ["projects", "describe"]:
        print("123456789012")
        return 0
    if argv[:2] != ["storage", "buckets"]:
        return 0
    verb, name = argv[2], argv[3].removeprefix("gs://").rstrip("/")
    command = f"gcloud.storage.buckets.{verb}"
    if verb == "create":
        if storage("POST", "b?project=standin", {"name": name}) == 409:
            print(f"ERROR: ({command}) HTTPError 409: The requested bucket name is not available.", file=sys.stderr)
            return 1
        asked = {
            "uniformBucketLevelAccess": {"enabled": "--uniform-bucket-level-access" in argv},
            "publicAccessPrevention": "enforced" if "--public-access-prevention" in argv else "inherited",
        }
        storage("PATCH", f"b/{name}", {"iamConfiguration": asked})
        return 0
    if verb in ("describe", "add-iam-policy-binding"):
        if storage("GET", f"b/{name}") == 404:
            print(f"ERROR: ({command}) HTTPError 404: The specified bucket does not exist.", file=sys.stderr)
            return 1
        return 0
    print(f"ERROR: ({command}) the stand-in does not know this command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
