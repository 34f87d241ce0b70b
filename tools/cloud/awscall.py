"""One AWS call, its botocore errors turned into one clear line (shared by the shim's AWS modules)."""

from __future__ import annotations

from typing import Any

from tools.cloud_permissions import hint
from tools.errors import ToolError


def aws_call(call: Any, what: str) -> Any:
    """Turn botocore's errors into one clear line."""
    import botocore.exceptions  # heavy: only when a cloud is called, never for --help or plan

    try:
        return call()
    except botocore.exceptions.NoCredentialsError:
        raise ToolError(f"{what}: no AWS credentials: configure a profile or role (in CI use OIDC)") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise ToolError(f"{what}: cannot reach AWS at {exc.kwargs.get('endpoint_url')}: check network/region") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "error")
        denied = hint(exc.operation_name) if code in ("AccessDenied", "AccessDeniedException") else ""
        raise ToolError(f"{what}: {code}: {err.get('Message', '')}{denied}", code=code) from None
    except botocore.exceptions.BotoCoreError as exc:  # e.g. a read timeout: one line, not a traceback
        raise ToolError(f"{what}: {exc}") from None


def client(service: str, region: str) -> Any:
    """A boto3 client of `service` in `region` (credentials: whatever boto3 finds)."""
    import boto3  # heavy (~0.3 s): only when a cloud is called, never for --help or plan

    return boto3.client(service, region_name=region)
