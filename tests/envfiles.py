"""Valid configurations for tests, with strong secrets that are easy to look for in output."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path


def canary(name: str) -> str:
    """A strong secret value unique to `name`, recognisable if it ever leaks."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"Cnry{digest[:40]}{name[:3].upper()}x9"


FERNET_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"test-fernet").digest()).decode()

COMMON = {
    "ENVIRONMENT": "production",
    "CLUSTER_NAME": "cmbtest",
    "NAMESPACE": "cmbcluster",
    "BASE_DOMAIN": "cmb.example.org",
    "SECRET_KEY": canary("SECRET_KEY"),
    "NEXTAUTH_SECRET": canary("NEXTAUTH_SECRET"),
    "FILE_ENCRYPTION_KEY": FERNET_KEY,
    "GOOGLE_CLIENT_ID": "123456789012-abcdefghij.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": canary("GOOGLE_CLIENT_SECRET"),
}
COGNITO = {
    "COGNITO_USER_POOL_ID": "us-east-1_AbCdEf123",
    "COGNITO_CLIENT_ID": "1a2b3c4d5e6f7g8h9i0jklmnop",
    "COGNITO_CLIENT_SECRET": canary("COGNITO_CLIENT_SECRET"),
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
}
PER_CLOUD = {
    "aws": {"CLOUD_PROVIDER": "aws", "AWS_ACCOUNT_ID": "123456789012", "AWS_REGION": "us-east-1"},
    "gcp": {
        "CLOUD_PROVIDER": "gcp",
        "PROJECT_ID": "cmb-project",
        "REGION": "us-central1",
        "LETSENCRYPT_EMAIL": "ops@example.org",
    },
    "local": {"CLOUD_PROVIDER": "local", "REGISTRY_URL": "127.0.0.1:5000"},
}
SECRETS = ("SECRET_KEY", "NEXTAUTH_SECRET", "FILE_ENCRYPTION_KEY", "GOOGLE_CLIENT_SECRET", "COGNITO_CLIENT_SECRET")


def good_env(cloud: str, auth: str = "google", **overrides: str | None) -> dict[str, str]:
    """A configuration that validates with no error; `None` in overrides removes a variable."""
    values = {**COMMON, **PER_CLOUD[cloud], "AUTH_PROVIDER": "auto" if auth == "both" else auth}
    if auth in ("cognito", "both"):
        values.update(COGNITO)
    if auth == "cognito":
        values.pop("GOOGLE_CLIENT_ID")
        values.pop("GOOGLE_CLIENT_SECRET")
    for key, value in overrides.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def secret_values(values: dict[str, str]) -> list[str]:
    return [values[k] for k in SECRETS if values.get(k)]


def auth_lines() -> str:
    """Env file lines for a complete sign-in provider (every changing step runs the rules)."""
    return "".join(f"{k}={COMMON[k]}\n" for k in ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"))
