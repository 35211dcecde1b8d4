"""The SLS LogGroup protobuf schema, built here rather than borrowed from the SDK.

Defining the schema independently of ``aliyun.log.log_logs_pb2`` keeps the emulator an honest second
opinion: if the SDK's descriptor drifted from the documented wire format, the round-trip tests would fail.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_REQUIRED, _OPTIONAL, _REPEATED = _F.LABEL_REQUIRED, _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# (message, [(field name, number, label, type, message type name)]); nested types are flattened because
# only field numbers and wire types matter on the wire.
_SCHEMA: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    ("Content", [("Key", 1, _REQUIRED, _F.TYPE_STRING, ""), ("Value", 2, _REQUIRED, _F.TYPE_BYTES, "")]),
    (
        "Log",
        [
            ("Time", 1, _REQUIRED, _F.TYPE_UINT32, ""),
            ("Contents", 2, _REPEATED, _F.TYPE_MESSAGE, "Content"),
            ("Time_ns", 4, _OPTIONAL, _F.TYPE_FIXED32, ""),
        ],
    ),
    ("LogTag", [("Key", 1, _REQUIRED, _F.TYPE_STRING, ""), ("Value", 2, _REQUIRED, _F.TYPE_STRING, "")]),
    (
        "LogGroup",
        [
            ("Logs", 1, _REPEATED, _F.TYPE_MESSAGE, "Log"),
            ("Reserved", 2, _OPTIONAL, _F.TYPE_STRING, ""),
            ("Topic", 3, _OPTIONAL, _F.TYPE_STRING, ""),
            ("Source", 4, _OPTIONAL, _F.TYPE_STRING, ""),
            ("MachineUUID", 5, _OPTIONAL, _F.TYPE_STRING, ""),
            ("LogTags", 6, _REPEATED, _F.TYPE_MESSAGE, "LogTag"),
        ],
    ),
]
_PACKAGE = "sls_emulator"


def _build_log_group_class() -> type[message.Message]:
    file_proto = descriptor_pb2.FileDescriptorProto(name="sls_emulator/log.proto", package=_PACKAGE, syntax="proto2")
    for name, fields in _SCHEMA:
        msg = file_proto.message_type.add(name=name)
        for field_name, number, label, ftype, type_name in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=ftype)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.LogGroup"))


LogGroup = _build_log_group_class()
