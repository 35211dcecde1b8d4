"""The KRaft cluster id never starts with '-', which the storage tool would read as an option."""

import uuid

from devstack.kafka import broker


def test_an_id_starting_with_a_dash_is_drawn_again(monkeypatch):
    # 0xf8 0x00 ... encodes as "-A..." in URL-safe base64: the first draw must be refused.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))

    cluster_id = broker.new_cluster_id()

    assert cluster_id == "AQEBAQEBAQEBAQEBAQEBAQ"


def test_ids_never_start_with_a_dash():
    assert not any(broker.new_cluster_id().startswith("-") for _ in range(2000))
