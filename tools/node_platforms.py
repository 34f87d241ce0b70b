"""Preflight: every image has a variant for each CPU architecture the cluster's nodes run.

An image without one fails on those nodes only after the deploy (`no match for platform in
manifest` from the kubelet's pull, or `exec format error` when the container starts), so
helm_deploy refuses it first. The nodes' architectures come from their `kubernetes.io/arch`
label (https://kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-arch);
an identity that may not list nodes gets a warning instead of a comparison.
"""

from __future__ import annotations

from tools import kube_ops
from tools.cloud import Cloud
from tools.image_index import image_platforms
from tools.kube_client import KubeApi
from tools.registry import image_registries
from tools.report import REPORTER

ARCH_LABEL = "kubernetes.io/arch"


def node_architectures(api: KubeApi) -> dict[str, list[str]] | None:
    """{architecture: node names} of the cluster's nodes; None when these credentials may not list nodes."""
    nodes = kube_ops.read_cluster_objects(api, "nodes", "the nodes")
    if nodes is None:
        return None
    found: dict[str, list[str]] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        arch = (meta.get("labels") or {}).get(ARCH_LABEL)
        if arch:
            found.setdefault(arch, []).append(meta.get("name") or "?")
    return found


def platform_problems(images: dict[str, dict[str, str]], cloud: Cloud, api: KubeApi) -> list[str]:
    """One line per image lacking a variant for an architecture the nodes run (a warning when nodes are hidden)."""
    nodes = node_architectures(api)
    if nodes is None:
        REPORTER.warning(
            "these credentials may not list the cluster's nodes: could not compare the images' CPU platforms "
            "with the nodes' (IMAGE_PLATFORMS must include every node architecture)",
            title="helm_deploy preflight",
        )
        return []
    problems = []
    with image_registries(cloud) as registry_for:
        for name, image in images.items():
            repository, digest = image["repository"], image["digest"]
            platforms = image_platforms(registry_for(repository), repository, digest)
            archs = {p.split("/")[1] for p in platforms if p.startswith("linux/")}
            for arch, names in sorted(nodes.items()):
                if arch not in archs:
                    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                    problems.append(
                        f"image {name} {repository}@{digest[:19]} was built for {', '.join(platforms) or 'no platform'}"
                        f" and has no linux/{arch} variant, the architecture of node(s) {shown}: build for the "
                        f"nodes (IMAGE_PLATFORMS=linux/{arch}, or a list with every node architecture) and deploy again"
                    )
    return problems
