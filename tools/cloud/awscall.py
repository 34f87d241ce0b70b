"""One AWS call, its botocore errors turned into one clear line (shared by the shim's AWS modules)."""

from __future__ import annotations

from typing import Any

from tools.errors import ToolError


def aws_call(call: Any, what: str) -> Any:
    """Turn botocore's errors into one clear line."""
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.NoCredentialsError:
        raise ToolError(f"{what}: no AWS credentials: configure a profile or role (in CI use OIDC)") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise ToolError(f"{what}: cannot reach AWS at {exc.kwargs.get('endpoint_url')}: check network/region") from None
    except botocore.exceptions.ClientError as exc:
        from tools.permissions import hint

        err = exc.response.get("Error", {})
        code = err.get("Code", "error")
        denied = hint(exc.operation_name) if code in ("AccessDenied", "AccessDeniedException") else ""
        raise ToolError(f"{what}: {code}: {err.get('Message', '')}{denied}", code=code) from None
