"""The few protobuf messages a CSI node plugin and the kubelet's plugin registration exchange,
built in Python from the specifications' text (no generated code, no fetched .proto).

Sources, field by field:
- CSI v1 (package `csi.v1`, services `Identity` and `Node`):
  https://github.com/container-storage-interface/spec/blob/master/spec.md
- the kubelet's plugin registration API (package `pluginregistration`, service `Registration`,
  served by the plugin on a socket in the kubelet's `plugins_registry` folder):
  https://kubernetes-csi.github.io/docs/ ("Kubelet plugin registration") and
  https://github.com/kubernetes/kubernetes/tree/master/staging/src/k8s.io/kubelet/pkg/apis/pluginregistration/v1
Only what the kubelet sends and reads is declared; messages the kubelet never sends a node plugin
(controller RPCs, staging, stats) are left out.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
STRING, BOOL, INT64, MESSAGE, ENUM = F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_INT64, F.TYPE_MESSAGE, F.TYPE_ENUM
OPTIONAL, REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED

# (name, number, type, label, type_name or "", oneof index or None)
Field = tuple[str, int, int, int, str, int | None]


def _message(
    file: descriptor_pb2.FileDescriptorProto,
    name: str,
    fields: list[Field],
    parent: descriptor_pb2.DescriptorProto | None = None,
    oneofs: tuple[str, ...] = (),
) -> descriptor_pb2.DescriptorProto:
    message = (parent.nested_type if parent else file.message_type).add(name=name)
    for oneof in oneofs:
        message.oneof_decl.add(name=oneof)
    for field_name, number, kind, label, type_name, oneof_index in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if oneof_index is not None:
            field.oneof_index = oneof_index
    return message


def _string_map(file: descriptor_pb2.FileDescriptorProto, message: descriptor_pb2.DescriptorProto, entry: str) -> None:
    """A proto3 `map<string, string>`: a nested *Entry message with map_entry set."""
    nested = _message(
        file, entry, [("key", 1, STRING, OPTIONAL, "", None), ("value", 2, STRING, OPTIONAL, "", None)], message
    )
    nested.options.map_entry = True


def _enum(message: descriptor_pb2.DescriptorProto, name: str, values: list[str]) -> None:
    enum = message.enum_type.add(name=name)
    for number, value in enumerate(values):
        enum.value.add(name=value, number=number)


def _csi_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="cmb_sim_csi.proto", package="csi.v1", syntax="proto3")
    for empty in (
        "GetPluginInfoRequest",
        "GetPluginCapabilitiesRequest",
        "ProbeRequest",
        "ProbeResponse",  # `ready` (a BoolValue) left unset: "ready" by the spec's default
        "NodeGetInfoRequest",
        "NodeGetCapabilitiesRequest",
        "NodePublishVolumeResponse",
        "NodeUnpublishVolumeResponse",
    ):
        _message(file, empty, [])
    info = _message(
        file,
        "GetPluginInfoResponse",
        [
            ("name", 1, STRING, OPTIONAL, "", None),
            ("vendor_version", 2, STRING, OPTIONAL, "", None),
            ("manifest", 3, MESSAGE, REPEATED, ".csi.v1.GetPluginInfoResponse.ManifestEntry", None),
        ],
    )
    _string_map(file, info, "ManifestEntry")
    capability = _message(
        file,
        "PluginCapability",
        [("service", 1, MESSAGE, OPTIONAL, ".csi.v1.PluginCapability.Service", 0)],
        oneofs=("type",),
    )
    service = _message(
        file, "Service", [("type", 1, ENUM, OPTIONAL, ".csi.v1.PluginCapability.Service.Type", None)], capability
    )
    _enum(service, "Type", ["UNKNOWN", "CONTROLLER_SERVICE", "VOLUME_ACCESSIBILITY_CONSTRAINTS"])
    _message(
        file,
        "GetPluginCapabilitiesResponse",
        [("capabilities", 1, MESSAGE, REPEATED, ".csi.v1.PluginCapability", None)],
    )
    _message(
        file,
        "NodeGetInfoResponse",
        [("node_id", 1, STRING, OPTIONAL, "", None), ("max_volumes_per_node", 2, INT64, OPTIONAL, "", None)],
    )
    node_capability = _message(
        file,
        "NodeServiceCapability",
        [("rpc", 1, MESSAGE, OPTIONAL, ".csi.v1.NodeServiceCapability.RPC", 0)],
        oneofs=("type",),
    )
    rpc = _message(
        file, "RPC", [("type", 1, ENUM, OPTIONAL, ".csi.v1.NodeServiceCapability.RPC.Type", None)], node_capability
    )
    _enum(rpc, "Type", ["UNKNOWN", "STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME"])
    _message(
        file,
        "NodeGetCapabilitiesResponse",
        [("capabilities", 1, MESSAGE, REPEATED, ".csi.v1.NodeServiceCapability", None)],
    )
    volume_capability = _message(
        file,
        "VolumeCapability",
        [
            ("block", 1, MESSAGE, OPTIONAL, ".csi.v1.VolumeCapability.BlockVolume", 0),
            ("mount", 2, MESSAGE, OPTIONAL, ".csi.v1.VolumeCapability.MountVolume", 0),
            ("access_mode", 3, MESSAGE, OPTIONAL, ".csi.v1.VolumeCapability.AccessMode", None),
        ],
        oneofs=("access_type",),
    )
    _message(file, "BlockVolume", [], volume_capability)
    _message(
        file,
        "MountVolume",
        [
            ("fs_type", 1, STRING, OPTIONAL, "", None),
            ("mount_flags", 2, STRING, REPEATED, "", None),
            ("volume_mount_group", 3, STRING, OPTIONAL, "", None),
        ],
        volume_capability,
    )
    access_mode = _message(
        file,
        "AccessMode",
        [("mode", 1, ENUM, OPTIONAL, ".csi.v1.VolumeCapability.AccessMode.Mode", None)],
        volume_capability,
    )
    _enum(
        access_mode,
        "Mode",
        [
            "UNKNOWN",
            "SINGLE_NODE_WRITER",
            "SINGLE_NODE_READER_ONLY",
            "MULTI_NODE_READER_ONLY",
            "MULTI_NODE_SINGLE_WRITER",
            "MULTI_NODE_MULTI_WRITER",
            "SINGLE_NODE_SINGLE_WRITER",
            "SINGLE_NODE_MULTI_WRITER",
        ],
    )
    publish = _message(
        file,
        "NodePublishVolumeRequest",
        [
            ("volume_id", 1, STRING, OPTIONAL, "", None),
            ("publish_context", 2, MESSAGE, REPEATED, ".csi.v1.NodePublishVolumeRequest.PublishContextEntry", None),
            ("staging_target_path", 3, STRING, OPTIONAL, "", None),
            ("target_path", 4, STRING, OPTIONAL, "", None),
            ("volume_capability", 5, MESSAGE, OPTIONAL, ".csi.v1.VolumeCapability", None),
            ("readonly", 6, BOOL, OPTIONAL, "", None),
            ("secrets", 7, MESSAGE, REPEATED, ".csi.v1.NodePublishVolumeRequest.SecretsEntry", None),
            ("volume_context", 8, MESSAGE, REPEATED, ".csi.v1.NodePublishVolumeRequest.VolumeContextEntry", None),
        ],
    )
    for entry in ("PublishContextEntry", "SecretsEntry", "VolumeContextEntry"):
        _string_map(file, publish, entry)
    _message(
        file,
        "NodeUnpublishVolumeRequest",
        [("volume_id", 1, STRING, OPTIONAL, "", None), ("target_path", 2, STRING, OPTIONAL, "", None)],
    )
    return file


def _registration_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="cmb_sim_pluginregistration.proto", package="pluginregistration", syntax="proto3"
    )
    _message(
        file,
        "PluginInfo",
        [
            ("type", 1, STRING, OPTIONAL, "", None),  # "CSIPlugin"
            ("name", 2, STRING, OPTIONAL, "", None),  # the CSI driver's name
            ("endpoint", 3, STRING, OPTIONAL, "", None),  # the CSI socket
            ("supported_versions", 4, STRING, REPEATED, "", None),
        ],
    )
    _message(
        file,
        "RegistrationStatus",
        [("plugin_registered", 1, BOOL, OPTIONAL, "", None), ("error", 2, STRING, OPTIONAL, "", None)],
    )
    _message(file, "RegistrationStatusResponse", [])
    _message(file, "InfoRequest", [])
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    found: dict[str, Any] = {}
    for file in (_csi_file(), _registration_file()):
        pool.AddSerializedFile(file.SerializeToString())
        described = pool.FindFileByName(file.name)
        for name, descriptor in described.message_types_by_name.items():
            found[name] = message_factory.GetMessageClass(descriptor)
    return found


MESSAGES = _classes()

# Each RPC: (full method path, request class, response class).
IDENTITY = {
    "GetPluginInfo": ("GetPluginInfoRequest", "GetPluginInfoResponse"),
    "GetPluginCapabilities": ("GetPluginCapabilitiesRequest", "GetPluginCapabilitiesResponse"),
    "Probe": ("ProbeRequest", "ProbeResponse"),
}
NODE = {
    "NodeGetInfo": ("NodeGetInfoRequest", "NodeGetInfoResponse"),
    "NodeGetCapabilities": ("NodeGetCapabilitiesRequest", "NodeGetCapabilitiesResponse"),
    "NodePublishVolume": ("NodePublishVolumeRequest", "NodePublishVolumeResponse"),
    "NodeUnpublishVolume": ("NodeUnpublishVolumeRequest", "NodeUnpublishVolumeResponse"),
}
REGISTRATION = {
    "GetInfo": ("InfoRequest", "PluginInfo"),
    "NotifyRegistrationStatus": ("RegistrationStatus", "RegistrationStatusResponse"),
}
SERVICES = {"csi.v1.Identity": IDENTITY, "csi.v1.Node": NODE, "pluginregistration.Registration": REGISTRATION}
