"""The page's "save frame": PNGs named after the camera and the capture time, at most max_files of them; the bound
removes only the files it saved, so a folder shared by mistake loses nothing else (and check-config refuses
sharing one)."""
import os
import time

import numpy as np
import pytest

from daemon import config
from daemon.config import ConfigError
from daemon.web.saved import save_frame, saved_name


def test_the_bound_removes_only_saved_frames_never_other_pngs_in_the_folder(tmp_path):
    """Found from outside: with saved_frames_dir on a folder camera's done_dir, one save deleted the archived scans."""
    for name in ("scan1.png", "first.png"):
        (tmp_path / name).write_bytes(b"\x89PNG archived scan")
        os.utime(tmp_path / name, (1, 1))                       # older than every saved frame
    image = np.zeros((8, 8, 3), np.uint8)
    t0 = time.time()
    saved = [save_frame(str(tmp_path), "dock", image, t0 + i, max_files=2) for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["first.png", "scan1.png", saved[2].name,
                                                                 saved[3].name])
    assert saved[3].name == saved_name("dock", t0 + 3)


@pytest.mark.parametrize("data, key", [
    ({"cameras": [{"name": "scan", "kind": "folder", "uri": "/srv/in", "done_dir": "/srv/done"}],
      "web": {"saved_frames_dir": "/srv/done"}}, "web.saved_frames_dir"),
    ({"cameras": [{"name": "scan", "kind": "folder", "uri": "/srv/in"}], "evidence": {"dir": "/srv/in/"}},
     "evidence.dir"),
])
def test_folders_the_daemon_reads_or_writes_must_be_apart(data, key):
    with pytest.raises(ConfigError) as err:
        config.from_dict({"device_id": "d", "mqtt": {"enabled": False}, **data})
    assert err.value.key == key and "must be apart" in str(err.value)
