import hashlib
import os

import pytest

from maasctl.errors import InvalidInput
from maasctl.store import hashing


def _tree(root):
    (root / "variables").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "saved_model.pb").write_bytes(b"proto" * 1000)
    (root / "variables" / "data").write_bytes(os.urandom(3 * hashing.CHUNK + 17))
    return root


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_copy_tree_hashed_matches_content(tmp_path, monkeypatch, kernel_copy):
    src = _tree(tmp_path / "src")
    if not kernel_copy:
        def refuse(fd_in, fd_out, count):
            os.write(fd_out, b"partial")  # a refusal after a partial write must not leave junk behind
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    dst = tmp_path / "dst"
    dst.mkdir()
    entries = hashing.copy_tree_hashed(src, dst)
    assert [e.path for e in entries] == ["saved_model.pb", "variables/data"]
    for e in entries:
        data = (src / e.path).read_bytes()
        assert (dst / e.path).read_bytes() == data
        assert (e.size, e.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (dst / "assets").is_dir()
    assert hashing.compare_tree(dst, entries) == []


def test_content_digest_depends_on_every_field():
    a = [hashing.FileEntry("a", 1, "0" * 64), hashing.FileEntry("b", 2, "1" * 64)]
    base = hashing.content_sha256(a)
    assert hashing.content_sha256(list(reversed(a))) == base
    assert hashing.content_sha256([hashing.FileEntry("a", 2, "0" * 64), a[1]]) != base
    assert hashing.content_sha256([hashing.FileEntry("c", 1, "0" * 64), a[1]]) != base


def test_symlinks_are_refused(tmp_path):
    src = _tree(tmp_path / "src")
    (src / "link").symlink_to(src / "saved_model.pb")
    with pytest.raises(InvalidInput, match="symbolic links are not allowed"):
        hashing.walk_files(src)
