"""The ARNs the AWS modules' permission declarations name (one place for their shape)."""

from __future__ import annotations

from tools.settings import Settings


def arn(settings: Settings, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{settings['AWS_REGION']}:{settings['AWS_ACCOUNT_ID']}:{resource}"
