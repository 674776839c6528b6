"""A campaign whose filesystem is nearly full stops with one line and exit 1 (`require_space`,
checked by the driver every second of the exploration); `aar run --resume` continues it."""
from __future__ import annotations

import errno
from collections import namedtuple

import pytest

from aar_ray import exits
from aar_ray.lab import store

Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize(("free_mib", "stops"), [(store.MIN_FREE_MIB - 1, True),
                                                 (store.MIN_FREE_MIB, False), (4096, False)])
def test_the_campaign_stops_below_the_free_space_floor(tmp_path, monkeypatch, free_mib, stops):
    monkeypatch.setattr(store.shutil, "disk_usage", lambda _: Usage(1 << 40, 0, free_mib << 20))
    if not stops:
        store.require_space(tmp_path)
        return
    with pytest.raises(OSError) as e:
        store.require_space(tmp_path)
    assert e.value.errno == errno.ENOSPC
    code, line = exits.classify(e.value)
    assert code == exits.FAILURE and "\n" not in line
    assert f"aar run --resume {tmp_path}" in line


def test_any_full_disk_error_is_one_line():
    code, line = exits.classify(OSError(errno.ENOSPC, "No space left on device", "/c/x.json"))
    assert (code, line) == (exits.FAILURE, "aar: failed: no space left on device (/c/x.json): "
                                           "No space left on device")
    assert exits.classify(OSError(errno.EACCES, "Permission denied")) is None  # still a bug
