"""Packages: round trip between stores, reproducibility, inspect, and hostile archives refused untouched."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import zlib
from pathlib import Path

import pytest
from conftest import cli, run_cli, tree_snapshot

from maasctl.errors import InvalidInput, NotFound, OperationFailed
from maasctl.package.archive import read_package_manifest
from maasctl.package.build import build_package, inspect_target, register_package
from maasctl.store import Store
from maasctl.store import manifest as mf
from maasctl.store.hashing import content_sha256

META = {
    "task": "classification",
    "feature_names": ["a", "b", "c", "d"],
    "class_names": ["x", "y", "z"],
    "metrics": {"accuracy": 0.93, "loss": 0.21},
    "params": {"train": {"epochs": 3, "seed": 7}},
    "lineage": {"run_id": "r-001", "config_sha256": "c" * 64, "data_sha256": "d" * 64, "git_commit": None, "seed": 7},
}


@pytest.fixture(scope="module")
def base(tmp_path_factory, saved_models) -> dict:
    """A store holding iris@1 (the small model, with run metadata) and a valid package of it."""
    root = tmp_path_factory.mktemp("pkgbase")
    store = Store(root / "store")
    store.register(saved_models["small"], "iris", meta=META, description="tiny iris", tags={"team": "ml"})
    result = build_package(store, "iris@1", root / "iris.maas")
    return {"root": root, "store": store, "pkg": result.path, "result": result}


def _members(pkg: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(pkg, "r:*") as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]


def _write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> Path:
    mode = "w:gz" if gz else "w"
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _with_manifest(members, edit) -> list:
    """Replace maas.json by edit(doc) with a consistent content_sha256, so only the intended flaw remains."""
    doc = json.loads(members[0][1])
    edit(doc)
    doc["content_sha256"] = content_sha256(mf.file_entries(doc))
    return [(members[0][0], mf.dumps(doc)), *members[1:]]


def _info(name: str, type_: bytes = tarfile.REGTYPE, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def _file(members, rel: str) -> int:
    return next(i for i, (m, _) in enumerate(members) if m.name == f"saved_model/{rel}")


def _hostile(case: str, pkg: Path) -> list | bytes:
    """Build one hostile variant of a valid package (members list or raw bytes)."""
    ms = _members(pkg)
    var = "variables/variables.data-00000-of-00001"
    if case == "absolute":
        return ms + [(_info("/tmp/evil"), b"x")]
    if case == "dotdot":
        return ms + [(_info("saved_model/../../evil"), b"x")]
    if case == "symlink":
        return ms + [(_info("saved_model/link", tarfile.SYMTYPE, linkname="/etc/passwd"), None)]
    if case == "hardlink":
        return ms + [(_info("saved_model/hard", tarfile.LNKTYPE, linkname="saved_model/saved_model.pb"), None)]
    if case == "device":
        return ms + [(_info("saved_model/dev", tarfile.CHRTYPE, devmajor=1, devminor=3), None)]
    if case == "fifo":
        return ms + [(_info("saved_model/fifo", tarfile.FIFOTYPE), None)]
    if case == "duplicate":
        i = _file(ms, "saved_model.pb")
        return ms + [ms[i]]
    if case == "outside":
        return ms + [(_info("elsewhere/file"), b"x")]
    if case == "absent":
        return [m for m in ms if m[0].name != f"saved_model/{var}"]
    if case == "unlisted":
        return ms + [(_info("saved_model/variables/extra.bin"), b"surprise")]
    if case == "digest":
        i = _file(ms, var)
        data = bytearray(ms[i][1])
        data[len(data) // 2] ^= 0xFF
        return [*ms[:i], (ms[i][0], bytes(data)), *ms[i + 1:]]
    if case == "size":
        def grow(doc):
            next(f for f in doc["files"] if f["path"] == var)["size"] += 1
        return _with_manifest(ms, grow)
    if case == "manifest-path":
        def escape(doc):
            doc["files"].append({"path": "../../escape", "size": 1, "sha256": "0" * 64})
        return _with_manifest(ms, escape)
    if case == "signatures":
        def lie(doc):
            doc["signatures"]["serving_default"]["inputs"]["features"]["dtype"] = "int64"
        return _with_manifest(ms, lie)
    if case == "manifest-not-first":
        return [*ms[1:], ms[0]]
    if case == "truncated-gz":
        data = pkg.read_bytes()
        return data[: len(data) * 2 // 3]
    if case == "truncated-tar":
        raw = gzip.decompress(pkg.read_bytes())
        return raw[: len(raw) // 2]
    if case == "truncated-boundary":  # cut right after the last member: no end-of-archive marker
        raw = gzip.decompress(pkg.read_bytes())
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            last = tar.getmembers()[-1]
        return gzip.compress(raw[: last.offset_data + -(-last.size // 512) * 512], mtime=0)
    if case == "not-tar":
        return b"this is not an archive at all\n" * 40
    if case == "gzip-not-tar":
        return gzip.compress(b"plain text, gzip-compressed, but no tar inside\n" * 40)
    if case == "pax-bomb":
        info = _info("saved_model/x")
        info.pax_headers = {"comment": "A" * (2 * 1024 * 1024)}
        return ms + [(info, b"x")]
    raise AssertionError(case)


HOSTILE = {  # case -> words the one-line message must contain
    "absolute": "absolute path",
    "dotdot": "'..' component",
    "symlink": "symbolic link",
    "hardlink": "hard link",
    "device": "device file",
    "fifo": "FIFO",
    "duplicate": "duplicate entry 'saved_model/saved_model.pb'",
    "outside": "outside maas.json and saved_model/",
    "absent": "lists saved_model/variables/variables.data-00000-of-00001, which the archive does not hold",
    "unlisted": "holds saved_model/variables/extra.bin, which maas.json does not list",
    "digest": "sha256 mismatch in saved_model/variables/variables.data-00000-of-00001",
    "size": "size mismatch in saved_model/variables/variables.data-00000-of-00001",
    "manifest-path": "unsafe file path '../../escape'",
    "signatures": "signatures in maas.json do not match",
    "manifest-not-first": "first entry is 'saved_model'",
    "truncated-gz": "truncated",
    "truncated-tar": "truncated",
    "truncated-boundary": "truncated archive (it ends before the end-of-archive marker)",
    "not-tar": "neither a gzip nor a tar archive",
    "gzip-not-tar": "not a maasctl package",
    "pax-bomb": "metadata header",
}


def _make(case: str, base: dict, where: Path) -> Path:
    built = _hostile(case, base["pkg"])
    path = where / f"{case}.maas"
    if isinstance(built, bytes):
        path.write_bytes(built)
    else:
        _write_tar(path, built)
    return path


def _assert_untouched(store: Store, before: dict, cwd: Path, cwd_before: list[str]) -> None:
    assert tree_snapshot(store.root) == before
    assert not store.staging_root.exists() or not any(store.staging_root.iterdir())
    assert sorted(os.listdir(cwd)) == cwd_before


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_refused_and_nothing_written(case, base, saved_models, tmp_path, monkeypatch):
    pkg = _make(case, base, tmp_path)
    store = Store(tmp_path / "store")
    store.register(saved_models["small_b"], "other")  # a store with content, to prove it stays byte-identical
    before = tree_snapshot(store.root)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(InvalidInput) as err:
        register_package(store, pkg, "iris")
    text = str(err.value)
    assert HOSTILE[case] in text and str(pkg) in text and "\n" not in text
    _assert_untouched(store, before, cwd, [])


def test_hostile_archive_into_fresh_store_leaves_no_store_behind(base, tmp_path):
    pkg = _make("symlink", base, tmp_path)
    store = Store(tmp_path / "fresh")
    with pytest.raises(InvalidInput, match="symbolic link"):
        register_package(store, pkg)
    assert not store.root.exists()


@pytest.mark.parametrize("case", ["absolute", "hardlink", "digest", "not-tar"])
def test_hostile_archive_cli_exit_2(case, base, tmp_path):
    pkg = _make(case, base, tmp_path)
    store_path = tmp_path / "store"
    r = cli("register", str(pkg), "--name", "iris", store=store_path, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and HOSTILE[case] in lines[0]
    assert r.stdout == ""
    assert not store_path.exists() and os.listdir(tmp_path) == [pkg.name]


def test_limits_entry_count_and_size(base, tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    monkeypatch.setenv("MAASCTL_MAX_ENTRIES", "5")
    with pytest.raises(InvalidInput, match=r"more than 5 entries \(limit MAASCTL_MAX_ENTRIES=5\)"):
        register_package(store, base["pkg"])
    monkeypatch.setenv("MAASCTL_MAX_ENTRIES", "lots")
    with pytest.raises(InvalidInput, match="MAASCTL_MAX_ENTRIES='lots': expected a positive whole number"):
        register_package(store, base["pkg"])
    monkeypatch.delenv("MAASCTL_MAX_ENTRIES")
    monkeypatch.setenv("MAASCTL_MAX_EXTRACT_BYTES", "20000")
    with pytest.raises(InvalidInput, match=r"more than 20000 bytes \(limit MAASCTL_MAX_EXTRACT_BYTES=20000\)"):
        register_package(store, base["pkg"])
    assert not store.root.exists()


def test_decompression_bomb_refused_before_extraction(base, tmp_path, monkeypatch):
    """64 MiB of zeros listed honestly in the manifest: a few KiB compressed, refused by the size cap."""
    big = b"\0" * (64 * 1024 * 1024)
    ms = _members(base["pkg"])

    def add(doc):
        import hashlib
        doc["files"].append({"path": "variables/zeros.bin", "size": len(big),
                             "sha256": hashlib.sha256(big).hexdigest()})
    ms = _with_manifest(ms, add) + [(_info("saved_model/variables/zeros.bin"), big)]
    pkg = _write_tar(tmp_path / "bomb.maas", ms)
    assert pkg.stat().st_size < 1024 * 1024
    monkeypatch.setenv("MAASCTL_MAX_EXTRACT_BYTES", str(32 * 1024 * 1024))
    store = Store(tmp_path / "store")
    r = cli("register", str(pkg), store=store.root, env={"MAASCTL_MAX_EXTRACT_BYTES": str(32 * 1024 * 1024)})
    assert r.returncode == 2
    assert "more than 33554432 bytes (limit MAASCTL_MAX_EXTRACT_BYTES=33554432)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not store.root.exists()


def test_round_trip_into_empty_store(base, tf, tmp_path):
    """package iris@1 -> register into an empty store: same metadata, same digest, same predictions."""
    import numpy as np

    from maasctl.tf.loader import load_version

    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("package", "iris@1", "-o", str(out), "--json", store=base["store"].root)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    pkg = Path(made["path"])
    assert pkg == out / "iris-1.maas" and made["size"] == pkg.stat().st_size and made["name"] == "iris"
    assert pkg.read_bytes() == base["pkg"].read_bytes() and made["sha256"] == base["result"].sha256

    second = tmp_path / "second"
    r = run_cli("register", str(pkg), "--json", store=second)
    assert r.returncode == 0, r.stderr
    reg = json.loads(r.stdout)
    assert reg["created"] is True and reg["ref"] == "iris@1"
    shows = [json.loads(run_cli("show", "iris@1", "--json", store=s).stdout) for s in (base["store"].root, second)]
    keys = ("sha256", "size", "metrics", "lineage", "task", "feature_names", "class_names", "signatures",
            "files", "params", "description", "tags")
    assert {k: shows[0][k] for k in keys} == {k: shows[1][k] for k in keys}
    assert shows[1]["metrics"] == META["metrics"] and shows[1]["class_names"] == META["class_names"]
    assert shows[1]["sha256"] == made["content_sha256"] and shows[1]["description"] == "tiny iris"

    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    _, a = load_version(base["store"], "iris@1")
    _, b = load_version(Store(second), "iris@1")
    pa, pb = a.predict({"features": x}), b.predict({"features": x})
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)

    r = run_cli("register", str(pkg), "--json", store=second)  # idempotent by content_sha256
    assert r.returncode == 0 and json.loads(r.stdout)["created"] is False


def test_parallel_gzip_independent_of_thread_count(saved_models, tmp_path, monkeypatch):
    """Blocks are cut at fixed offsets, so one thread and many give the same bytes (a 3 MiB+ model)."""
    import numpy as np

    from maasctl.package import archive as package

    src = tmp_path / "model"
    shutil.copytree(saved_models["small"], src)
    (src / "assets").mkdir(exist_ok=True)  # the committed test models have no assets/
    (src / "assets" / "blob.bin").write_bytes(np.random.default_rng(0).normal(size=900_000).astype("float32").tobytes())
    store = Store(tmp_path / "store")
    outs = []
    for workers in (1, 3):
        monkeypatch.setattr(package, "_worker_count", lambda w=workers: w)
        outs.append(build_package(store, src, tmp_path / f"w{workers}.maas", name="m").path.read_bytes())
    assert outs[0] == outs[1]
    raw = gzip.decompress(outs[0])  # checks every member's CRC and length
    assert raw[:9] == b"maas.json" and len(raw) % 512 == 0


def test_round_trip_from_a_training_run(tf, tmp_path):
    """train a tiny model -> package the run -> register into an empty store: metadata and predictions equal."""
    import numpy as np

    from maasctl.tf.loader import load_model, load_version
    from maasctl.training.runs import load_run

    store_a, store_b = tmp_path / "a", tmp_path / "b"
    config = Path(__file__).resolve().parent.parent / "examples" / "iris" / "config.toml"
    r = run_cli("train", str(config), "--set", "train.epochs=2", "--json", store=store_a)
    assert r.returncode == 0, r.stderr
    run = load_run(Store(store_a), json.loads(r.stdout)["run_id"])
    made = [json.loads(run_cli("package", run.run_id, "-o", str(tmp_path / f"p{i}.maas"), "--json",
                               store=store_a).stdout) for i in (1, 2)]
    assert made[0]["sha256"] == made[1]["sha256"] and made[0]["name"] == run.register_name == "iris"
    manifest = read_package_manifest(made[0]["path"])
    for key in mf.META_KEYS:
        assert manifest.get(key) == run.meta.get(key), key
    assert manifest["lineage"]["run_id"] == run.run_id and manifest["class_names"]

    r = run_cli("register", made[0]["path"], "--json", store=store_b)
    assert r.returncode == 0, r.stderr
    shown = json.loads(run_cli("show", "iris", "--json", store=store_b).stdout)
    assert shown["sha256"] == made[0]["content_sha256"]
    assert shown["description"] == run.meta["params"]["register"]["description"]
    assert (shown["metrics"], shown["lineage"], shown["class_names"], shown["feature_names"], shown["params"]) == (
        run.meta["metrics"], run.meta["lineage"], run.meta["class_names"], run.meta["feature_names"],
        run.meta["params"])
    x = np.random.default_rng(1).normal(5.0, 1.5, size=(7, 4)).astype("float32")
    want = load_model(run.model_dir).predict({"features": x})
    got = load_version(Store(store_b), "iris@1")[1].predict({"features": x})
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def test_crc32_combine():
    from maasctl.package.archive import crc32_combine

    for a, b in [(b"", b"xyz"), (b"abc", b""), (b"head" * 300, os.urandom(70_000)), (os.urandom(9), b"\0" * 3)]:
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_reproducible_and_sensitive_to_one_byte(saved_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    src = tmp_path / "model"
    shutil.copytree(saved_models["small"], src)
    a = build_package(store, src, tmp_path / "a.maas", name="m")
    for p in src.rglob("*"):  # timestamps and the source location do not leak into the package
        os.utime(p, (1_000_000, 1_000_000))
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(src, moved)
    b = build_package(store, moved, tmp_path / "b.maas", name="m")
    assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    c1 = build_package(store, src, tmp_path / "c1.maas", name="m", compression="none")
    c2 = build_package(store, src, tmp_path / "c2.maas", name="m", compression="none")
    assert c1.path.read_bytes() == c2.path.read_bytes() and c1.sha256 != a.sha256
    assert c1.manifest == a.manifest
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    default = build_package(store, src)  # ./<dir name>-<short content digest>.maas
    assert default.path == cwd / f"model-{a.manifest['content_sha256'][:12]}.maas"
    assert default.manifest["name"] == "model" and os.listdir(cwd) == [default.path.name]
    reg = Store(tmp_path / "other")
    assert register_package(reg, c1.path).created  # an uncompressed package registers the same content
    assert not register_package(reg, a.path).created

    weights = moved / "variables" / "variables.data-00000-of-00001"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    d = build_package(store, moved, tmp_path / "d.maas", name="m")
    assert d.sha256 != a.sha256 and d.manifest["content_sha256"] != a.manifest["content_sha256"]
    changed = [f["path"] for f, g in zip(a.manifest["files"], d.manifest["files"]) if f != g]
    assert changed == ["variables/variables.data-00000-of-00001"]


def test_package_layout(base):
    data = base["pkg"].read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"  # no name, mtime 0
    inflater = zlib.decompressobj(31)  # one ordinary gzip member; zlib checks the trailer's CRC-32 and length
    raw = inflater.decompress(data)
    assert inflater.eof and inflater.unused_data == b"" and len(raw) % 512 == 0
    with tarfile.open(base["pkg"], "r|gz") as tar:  # a strict streaming reader sees every entry
        assert len(list(tar)) == len(_members(base["pkg"]))
    ms = _members(base["pkg"])
    assert ms[0][0].name == "maas.json"
    names = [m.name for m, _ in ms[1:]]
    assert names == sorted(names) and all(n == "saved_model" or n.startswith("saved_model/") for n in names)
    for m, _ in ms:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() else 0o644)
    manifest = json.loads(ms[0][1])
    assert manifest == read_package_manifest(base["pkg"]) == base["result"].manifest
    assert manifest["name"] == "iris" and manifest["metrics"] == META["metrics"]
    assert manifest["lineage"] == META["lineage"] and manifest["class_names"] == META["class_names"]
    assert set(manifest["environment"]) >= {"tensorflow", "python", "maasctl"}
    assert manifest["signatures"]["serving_default"]["inputs"]["features"]["shape"] == [-1, 4]
    listed = {f["path"]: f for f in manifest["files"]}
    held = {m.name[len("saved_model/"):]: d for m, d in ms[1:] if m.isreg()}
    assert set(listed) == set(held)
    import hashlib
    assert all(listed[p]["sha256"] == hashlib.sha256(d).hexdigest() for p, d in held.items())


def test_inspect_file_and_ref(base, tmp_path):
    before = tree_snapshot(base["store"].root)
    r = cli("inspect", str(base["pkg"]), store=base["store"].root, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["name", "iris"]
    assert ["metric", "accuracy", "0.9300"] in [ln.split() for ln in lines]
    assert ["lineage", "run_id", "r-001"] in [ln.split() for ln in lines]
    assert ["serving_default", "input", "features", "float32[-1,", "4]"] in [ln.split() for ln in lines]
    assert ["serving_default", "output", "output_0", "float32[-1,", "3]"] in [ln.split() for ln in lines]
    r = cli("inspect", str(base["pkg"]), "--json", store=base["store"].root, cwd=tmp_path)
    assert json.loads(r.stdout) == base["result"].manifest
    r = cli("inspect", "iris@1", "--json", store=base["store"].root, cwd=tmp_path)
    assert json.loads(r.stdout)["content_sha256"] == base["result"].manifest["content_sha256"]
    assert os.listdir(tmp_path) == [] and tree_snapshot(base["store"].root) == before
    r = cli("inspect", str(tmp_path / "nope.maas"), store=base["store"].root)
    assert r.returncode == 3 and "no such package file" in r.stderr


def test_package_not_a_savedmodel(tmp_path):
    bad = tmp_path / "notamodel"
    bad.mkdir()
    (bad / "weights.bin").write_bytes(b"123")
    r = cli("package", str(bad), store=tmp_path / "store", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "not a SavedModel" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["notamodel"]


def test_package_errors(base, saved_models, tmp_path):
    store = base["store"]
    with pytest.raises(NotFound, match="model 'nosuch' not found"):
        build_package(store, "nosuch@1", tmp_path / "x.maas")
    with pytest.raises(InvalidInput, match="unknown compression 'zstd'"):
        build_package(store, "iris@1", tmp_path / "x.maas", compression="zstd")
    with pytest.raises(InvalidInput, match="is a file"):
        build_package(store, base["pkg"], tmp_path / "x.maas")
    with pytest.raises(InvalidInput, match="output directory"):
        build_package(store, "iris@1", tmp_path / "missing" / "x.maas")
    assert os.listdir(tmp_path) == []
    with pytest.raises(InvalidInput, match="is a directory"):
        inspect_target(store, str(saved_models["small"]))
    with pytest.raises(NotFound, match="model 'nosuch' not found"):
        inspect_target(store, "nosuch@2")


def test_package_refuses_damaged_stored_version(saved_models, tmp_path):
    store = Store(tmp_path / "store")
    info = store.register(saved_models["small"], "iris").info
    weights = info.path / "variables" / "variables.data-00000-of-00001"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OperationFailed, match="variables/variables.data-00000-of-00001 does not match"):
        build_package(store, "iris@1", out)
    assert os.listdir(out) == []


def test_register_uses_manifest_name_and_keeps_metadata(base, tmp_path):
    store = Store(tmp_path / "store")
    first = register_package(store, base["pkg"], aliases=["candidate"])
    assert first.created and first.info.ref == "iris@1" and first.info.aliases == ["candidate"]
    assert first.info.metrics == META["metrics"] and first.info.lineage == META["lineage"]
    assert first.info.meta["class_names"] == META["class_names"]
    assert store.check_version(first.info) == []
    again = register_package(store, base["pkg"])
    assert not again.created and again.info.version == 1
    assert (first.info.description, first.info.tags) == ("tiny iris", {"team": "ml"})
    renamed = register_package(store, base["pkg"], "iris-copy", description="moved", tags={"team": "ops", "env": "x"})
    assert renamed.created and renamed.info.ref == "iris-copy@1"
    assert (renamed.info.description, renamed.info.tags) == ("moved", {"team": "ops", "env": "x"})
    assert not any(store.staging_root.iterdir())

