"""The chart values a deploy gives a release: the settings' values, then the ones read from the cloud.

Shared by the steps that must agree on what a release would be rendered with: helm_deploy installs
it, fleet_status compares the live objects with it (drift).
"""

from __future__ import annotations

from typing import Any

from tools.cloud import Cloud


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, mappings merged key by key, everything else replaced (like --set)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def deploy_values(cloud: Cloud, images: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What helm_deploy installs for these images (before a --values file of the caller's)."""
    return merge(cloud.chart_values(images), cloud.deploy_values())
