"""S3 store benchmarks (issue 12), against moto's server on 127.0.0.1 (its own process, so it does not share
our GIL).

    python bench/bench_s3.py [--mb 200] [--versions 1000] [--repeat 3]

Prints wall times with baselines measured in the same run:
- push of a ~--mb MB model from a local store (library `copy_version`: verify the local copy, hash, claim,
  upload, commit) against boto3's managed transfer (`upload_file` of the same files, same concurrency);
  target <= 1.5x;
- listing a model with --versions versions (`list_versions`: every version's record), in-process: first with no
  index (the versions are bulk-loaded without one: the repair path), then with the index the first list wrote;
  and as a `maasctl list NAME --json` subprocess (which also pays interpreter + boto3 start-up;
  `python -c "import boto3; boto3.client('s3')"` is printed as that floor); target <= 1.0 s;
- `serve NAME` cold start (process start to first successful predict) from the S3 store with an empty cache,
  against the same from the local store and boto3's download of the version's objects (8 at once);
  target <= local + 1.2 x download.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    raise SystemExit("moto server did not start")


def make_model(work: Path, mb: int) -> Path:
    """A tiny real SavedModel plus --mb MB of weights-like data split over a few files."""
    from maasctl.tf import load_tensorflow
    from maasctl.tf.testing import build_mlp

    model = build_mlp(load_tensorflow(), work / "model", [4, 3], seed=0)
    (model / "assets").mkdir(exist_ok=True)
    parts = 4
    for i in range(parts):
        with open(model / "assets" / f"shard-{i}.bin", "wb") as f:
            f.writelines(os.urandom(1 << 20) for _ in range(mb // parts))
    return model


def median_time(fn, repeat: int, setup=None) -> float:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="maasctl-bench-s3-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` still stops the moto server below
    moto, endpoint = start_moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint, MAASCTL_CACHE=str(work / "cache"),
                      MAASCTL_LOCAL_HOME=str(work / "home"))
    try:
        import boto3
        from botocore.config import Config

        from maasctl import store as st
        from maasctl.store.s3io import S3, Location
        from maasctl.store.transfer import copy_version

        s3 = boto3.client("s3", config=Config(max_pool_connections=32))  # as maasctl's client: no pool thrashing
        model = make_model(work, args.mb)
        files = sorted(p for p in model.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        local = st.LocalStore(work / "local")
        local.register(model, "big")

        # -- push vs upload_file ------------------------------------------------------------------------
        cfg = S3.transfer_config()

        def fresh_bucket() -> str:
            name = f"b-{uuid.uuid4().hex[:10]}"
            s3.create_bucket(Bucket=name)
            return name

        bucket = [""]

        def setup() -> None:
            bucket[0] = fresh_bucket()

        def raw_upload() -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda p: s3.upload_file(str(p), bucket[0], f"raw/{p.relative_to(model)}",
                                                       Config=cfg), files))

        def push() -> None:
            copy_version(local, st.open_store(f"s3://{bucket[0]}/reg"), "big@1")

        S3(Location("warm", ""))  # maasctl's per-process client exists before timing, like the baseline's
        raw_t = median_time(raw_upload, args.repeat, setup)
        push_t = median_time(push, args.repeat, setup)
        print(f"model of {size / 2**20:.0f} MiB in {len(files)} files; moto server at {endpoint}")
        print(f"boto3 upload_file x{len(files)}  {raw_t:7.2f} s   (baseline, 8 files at once, TransferConfig as ours)")
        print(f"push (copy_version)     {push_t:7.2f} s   {push_t / raw_t:5.2f}x  target <= 1.5x: "
              f"{'OK' if push_t <= 1.5 * raw_t else 'MISSED'}  (includes verifying the local copy and hashing)")

        # -- serve cold start: local store vs S3 (empty cache) vs the raw download of the same bytes ------
        spec_big = f"s3://{bucket[0]}/reg"
        prefix = "reg/models/big/1/"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket[0], Prefix=prefix)["Contents"]]
        caches = iter(range(10**6))

        def raw_download() -> None:
            dest = work / f"raw-{next(caches)}"
            for k in keys:
                (dest / k[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda k: s3.download_file(bucket[0], k, str(dest / k[len(prefix):]), Config=cfg),
                              keys))
            shutil.rmtree(dest)

        local_serve = median_time(lambda: serve_first_predict(str(work / "local"), "big", {}), args.repeat)
        s3_serve = median_time(lambda: serve_first_predict(
            spec_big, "big", {"MAASCTL_CACHE": str(work / f"serve-cache-{next(caches)}")}), args.repeat)
        raw_dl = median_time(raw_download, args.repeat)
        budget = local_serve + 1.2 * raw_dl
        print(f"serve, local store      {local_serve:7.2f} s   (baseline: start to first successful predict)")
        print(f"boto3 download x{len(keys):<3}     {raw_dl:7.2f} s   (baseline: the version's objects, 8 at once)")
        print(f"serve, S3 (cold cache)  {s3_serve:7.2f} s   {s3_serve / local_serve:5.2f}x local; "
              f"target <= local + 1.2 x download = {budget:.2f} s: {'OK' if s3_serve <= budget else 'MISSED'}")

        # -- list of N versions -------------------------------------------------------------------------
        name = fresh_bucket()
        spec = f"s3://{name}/reg"
        reg = st.open_store(spec)
        tiny = work / "tiny"
        shutil.copytree(model, tiny, ignore=shutil.ignore_patterns("assets"))
        first = reg.register(tiny, "many").info
        fill_t = time.perf_counter()
        _fill_versions(reg, first, args.versions)
        fill_t = time.perf_counter() - fill_t
        repair = median_time(lambda: st.open_store(spec).list_versions("many"), 1)  # builds the index
        indexed = median_time(lambda: st.open_store(spec).list_versions("many"), args.repeat)
        n = len(st.open_store(spec).list_versions("many"))
        env = {**os.environ}
        cli = median_time(lambda: subprocess.run([sys.executable, "-m", "maasctl", "--store", spec, "list", "many",
                                                  "--json"], check=True, stdout=subprocess.DEVNULL, env=env),
                          args.repeat)
        local_cli = median_time(lambda: subprocess.run(
            [sys.executable, "-m", "maasctl", "--store", str(work / "local"), "list", "big", "--json"], check=True,
            stdout=subprocess.DEVNULL, env=env), args.repeat)
        floor = median_time(lambda: subprocess.run([sys.executable, "-c", "import boto3; boto3.client('s3')"],
                                                   check=True, env=env), args.repeat)
        print(f"{n} versions written in {fill_t:.1f} s")
        print(f"list_versions, no index {repair:7.2f} s   (first list after a bulk load: every maas.json read "
              f"once, index written)")
        print(f"list_versions           {indexed:7.2f} s   (index + one delimiter LIST)  target <= 1.0 s: "
              f"{'OK' if indexed <= 1.0 else 'MISSED'}")
        print(f"python + boto3 client   {floor:7.2f} s   (baseline: start-up floor of any s3:// command)")
        print(f"maasctl list (local)    {local_cli:7.2f} s   (baseline: the CLI's own start-up, a local store)")
        print(f"maasctl list many       {cli:7.2f} s   {cli - floor:5.2f} s over the boto3 floor, "
              f"{cli - local_cli:5.2f} s over the local list  target <= 1.0 s: {'OK' if cli <= 1.0 else 'MISSED'}")
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def serve_first_predict(store: str, name: str, env: dict[str, str]) -> float:
    """Seconds from starting `maasctl serve NAME --store STORE` to its first successful predict."""
    import json
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    body = json.dumps({"instances": [[0.1, 0.2, 0.3, 0.4]]}).encode()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "maasctl", "--store", store, "serve", name, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env})
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server died: {proc.stderr.read().decode()[-2000:]}")
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{name}:predict", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _fill_versions(store, first, count: int) -> None:
    """Versions 2..count as the commit protocol writes them (claim, files, maas.json), many at once, but
    without the index entries (the first list finds them: the index's repair path)."""
    import json

    from maasctl.store import manifest as mf

    s3 = store.s3
    base = store._vprefix("many", first.version)
    manifest = store.manifest(first)
    keys = [o["Key"][len(base):] for o in s3.objects(base) if not o["Key"].endswith(mf.MANIFEST_NAME)]

    def one(v: int) -> None:
        prefix = store._vprefix("many", v)
        s3.put(store._reg("many", "claims", f"{v:010d}.json"), json.dumps({"version": v}).encode(),
               if_none_match=True)
        for k in keys:
            s3.client.copy_object(Bucket=s3.bucket, Key=prefix + k, CopySource={"Bucket": s3.bucket, "Key": base + k})
        s3.put(prefix + mf.MANIFEST_NAME, mf.dumps({**manifest, "version": v}), if_none_match=True)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(first.version + 1, count + 1)))


if __name__ == "__main__":
    main()
