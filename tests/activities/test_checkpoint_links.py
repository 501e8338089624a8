"""The checkpoint scan runs as the worker's user (root in compose): it never follows a link a
container planted, and never reads outside the job's checkpoint directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from activities import checkpoint_files


def _plant(root: Path) -> Path:
    ckpt = root / "ckpt"
    ckpt.mkdir()
    (ckpt / "ckpt-1").symlink_to("/etc")
    (ckpt / "ckpt-2").symlink_to("/etc/passwd")
    real = ckpt / "ckpt-3"
    real.mkdir()
    (real / "weights.bin").write_bytes(b"w" * 10)
    (real / "escape").symlink_to("/")
    (real / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(real / "pipe")  # opening it for reading would block a careless scanner
    (ckpt / "ckpt-4.pt").write_bytes(b"model")
    return ckpt


def test_scan_lists_no_links(tmp_path: Path) -> None:
    ckpt = _plant(tmp_path)
    assert checkpoint_files.scan(ckpt) == [ckpt / "ckpt-3", ckpt / "ckpt-4.pt"]


def test_fingerprint_and_state_skip_links_and_fifos(tmp_path: Path) -> None:
    ckpt = _plant(tmp_path)
    size, sha = checkpoint_files.fingerprint(ckpt / "ckpt-3")
    expected = hashlib.sha256(b"weights.bin\0" + b"w" * 10).hexdigest()
    assert (size, sha) == (10, expected)
    assert checkpoint_files.state_of(ckpt / "ckpt-3")[0] == 10
    assert checkpoint_files.fingerprint(ckpt / "ckpt-4.pt")[0] == 5
    for link in ("ckpt-1", "ckpt-2"):
        try:
            checkpoint_files.fingerprint(ckpt / link)
        except OSError:
            continue
        raise AssertionError(f"{link} was read through its link")


def test_announced_paths_never_pass_a_link(tmp_path: Path) -> None:
    ckpt = _plant(tmp_path)
    for announced in ["ckpt-1", "ckpt-1/passwd", "ckpt-2", "ckpt-3/escape/etc", "../ckpt", ""]:
        assert checkpoint_files.resolve_inside(ckpt, announced) is None, announced
    assert checkpoint_files.resolve_inside(ckpt, "/ckpt-3/weights.bin") == (
        ckpt.resolve() / "ckpt-3" / "weights.bin"
    )
    assert checkpoint_files.resolve_inside(ckpt, "missing") is None
