"""The on-disk store-and-forward log: ordered, bounded (oldest dropped), durable across reopen, exclusive."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.store_forward import BufferInUse, DiskBuffer


def test_append_read_delete_in_order(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path / "b.db", max_bytes=10_000)
    ids = [buf.append(b"k", f"v{i}".encode(), buffered=i % 2 == 0) for i in range(5)]
    assert ids == sorted(ids) and len(buf) == 5
    rows = buf.after(ids[1], 10)
    assert [r[0] for r in rows] == ids[2:] and rows[0][2] == b"v2" and rows[0][3] is True
    buf.delete(ids[:3])
    assert len(buf) == 2 and buf.bytes == 2 * (1 + 2)
    assert buf.first_id() == ids[3] and buf.last_assigned_id() == ids[4]
    buf.delete(ids[3:])
    assert len(buf) == 0 and buf.bytes == 0
    assert buf.last_assigned_id() == ids[4]  # ids keep growing after the log empties
    assert buf.append(b"k", b"x", False) == ids[4] + 1
    buf.close()


def test_bound_drops_the_oldest(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path / "b.db", max_bytes=100)
    for i in range(20):
        buf.append(b"key", b"0123456" + bytes([i]), False)  # 11 bytes each: 9 fit in 100
    assert len(buf) == 9 and buf.dropped == 11 and buf.bytes <= 100
    assert [r[2][-1] for r in buf.after(0, 100)] == list(range(11, 20))  # the newest are kept
    assert buf.fill == pytest.approx(0.99)
    buf.close()


def test_survives_reopen_and_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buf = DiskBuffer(path, max_bytes=10_000)
    buf.append(b"a", b"frame-1", True)
    buf.append(b"a", b"frame-2", True)
    with pytest.raises(BufferInUse, match="used by another running producer"):
        DiskBuffer(path, max_bytes=10_000)
    buf.close()
    again = DiskBuffer(path, max_bytes=10_000)
    assert [r[2] for r in again.after(0, 10)] == [b"frame-1", b"frame-2"] and again.bytes == 2 * 8
    again.close()
