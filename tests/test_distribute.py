"""`[train] distribute` resolution and TF_CONFIG parsing (no TensorFlow)."""

from __future__ import annotations

import json

import pytest
from conftest import cli

from maasctl.errors import InvalidInput
from maasctl.training.distribute import free_ports, local_tf_configs, missing_task, parse_tf_config, resolve


def tfc(cluster: dict, task_type: str = "worker", index: int = 0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


TWO = {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}
WITH_CHIEF = {"chief": ["h0:2000"], "worker": ["h1:2001", "h2:2002"], "evaluator": ["h3:2003"]}


def test_roles_worker_zero_is_chief_without_a_chief_job():
    w0, w1 = parse_tf_config(tfc(TWO, "worker", 0)), parse_tf_config(tfc(TWO, "worker", 1))
    assert w0 is not None and w1 is not None
    assert (w0.is_chief, w0.role, w0.n_workers) == (True, "chief", 2)
    assert (w1.is_chief, w1.role) == (False, "worker 1")


def test_roles_with_a_chief_job():
    chief, w0 = parse_tf_config(tfc(WITH_CHIEF, "chief", 0)), parse_tf_config(tfc(WITH_CHIEF, "worker", 0))
    assert chief is not None and w0 is not None
    assert (chief.is_chief, chief.role, chief.n_workers) == (True, "chief", 3)  # the evaluator does not train
    assert (w0.is_chief, w0.role) == (False, "worker 0")


@pytest.mark.parametrize("text", [None, "", "  ", '{"task": {"type": "worker", "index": 0}}', '{"cluster": {}}'])
def test_no_cluster(text):
    assert parse_tf_config(text) is None


@pytest.mark.parametrize(("text", "needle"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}), "cluster.worker"),
    (json.dumps({"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker"}}), "cluster.worker"),
    (json.dumps({"cluster": TWO}), '"task" is missing'),
    (tfc(TWO, "chief", 0), 'task.type "chief" is not a job'),
    (tfc(TWO, "worker", 2), "task.index 2 is out of range"),
    (tfc({"ps": ["h:1"]}, "ps", 0), 'no "chief" or "worker" job'),
    (tfc(WITH_CHIEF, "evaluator", 0), "does not train"),
    (tfc({"chief": ["a:1", "b:2"]}, "chief", 0), "exactly one task"),
])
def test_invalid_tf_config_is_one_line_naming_it(text, needle):
    with pytest.raises(InvalidInput) as info:
        parse_tf_config(text)
    msg = str(info.value)
    assert msg.startswith("TF_CONFIG: ") and needle in msg and "\n" not in msg


def test_resolve_auto():
    gpus = {"n": 0}
    count = lambda: gpus["n"]
    assert resolve("auto", {}, count).mode == "none"
    gpus["n"] = 2
    assert resolve("auto", {}, count).mode == "mirrored"
    plan = resolve("auto", {"TF_CONFIG": tfc(TWO, "worker", 1)}, count)
    assert (plan.mode, plan.role, plan.is_chief, plan.n_workers) == ("multi_worker", "worker 1", False, 2)
    one = {"worker": ["127.0.0.1:2001"]}  # a one-worker cluster is not a cluster worth a strategy
    gpus["n"] = 0
    assert resolve("auto", {"TF_CONFIG": tfc(one)}, count).mode == "none"


def test_resolve_explicit_modes():
    assert resolve("none", {}).mode == "none"
    assert resolve("mirrored", {}).mode == "mirrored"
    plan = resolve("multi_worker", {})
    assert (plan.mode, plan.cluster, plan.is_chief) == ("multi_worker", None, True)
    with pytest.raises(InvalidInput, match='train.distribute = "none" but TF_CONFIG names a cluster of 2'):
        resolve("none", {"TF_CONFIG": tfc(TWO)})
    with pytest.raises(InvalidInput, match="train.distribute: expected one of"):
        resolve("fast", {})


def test_local_tf_configs_and_ports():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    docs = [json.loads(t) for t in local_tf_configs(3, ports)]
    assert [d["task"] for d in docs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(d["cluster"] == {"worker": [f"127.0.0.1:{p}" for p in ports]} for d in docs)
    assert parse_tf_config(local_tf_configs(3, ports)[0]).is_chief  # type: ignore[union-attr]


def test_missing_task_names_the_peer_not_itself():
    me = parse_tf_config(tfc(TWO, "worker", 0))
    msg = ("{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/device:CPU:0}} "
           "Collective ops is aborted by: Error reported from /job:worker/task:1: unhealthy")
    assert missing_task(msg, me) == "worker 1 (127.0.0.1:2002)"
    assert missing_task("cluster check alive failed, /job:worker/replica:0/task:1 is down", me) \
        == "worker 1 (127.0.0.1:2002)"
    assert missing_task("something else", me) is None


def test_bad_distribute_value_in_config(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    (tmp_path / "c.toml").write_text('[data]\npath = "d.csv"\nlabel = "y"\n[model]\ntask = "classification"\n'
                                     '[[model.layers]]\ntype = "Dense"\nunits = 2\nactivation = "softmax"\n[train]\ndistribute = "many"\n')
    r = cli("train", str(tmp_path / "c.toml"), store=tmp_path / "store")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        (f"Error: {tmp_path / 'c.toml'}: train.distribute: expected one of auto, none, mirrored, multi_worker, "
         "got the string \"many\"")]
    assert "Traceback" not in r.stderr and not (tmp_path / "store" / "runs").exists()
    # a broken TF_CONFIG is an input error before TensorFlow loads
    (tmp_path / "c.toml").write_text((tmp_path / "c.toml").read_text().replace('"many"', '"auto"'))
    r = cli("train", str(tmp_path / "c.toml"), store=tmp_path / "store", env={"TF_CONFIG": "{oops"})
    assert r.returncode == 2 and r.stderr.startswith("Error: TF_CONFIG: not valid JSON") \
        and len(r.stderr.strip().splitlines()) == 1
    r = cli("train", str(tmp_path / "c.toml"), "--workers", "2", "--set", 'train.distribute="none"',
            store=tmp_path / "store")
    assert r.returncode == 2 and "--workers needs" in r.stderr


def test_cluster_view_lines_in_a_pipe(capsys):
    """`train --workers` without a terminal: who started, the chief's epochs, every child's own lines."""
    from maasctl.cli.train_cluster import ClusterView

    view = ClusterView(2, tty=False)
    view(0, {"event": "started", "pid": 11, "address": "127.0.0.1:5000"})
    view(1, {"event": "started", "pid": 12, "address": "127.0.0.1:5001"})
    for i in (0, 1):
        view(i, {"event": "start", "epochs": 2, "steps": 3})
        view(i, {"event": "epoch_start", "epoch": 1})
        view(i, {"event": "batch", "step": 2, "logs": {"loss": 0.5}})
        view(i, {"event": "epoch_end", "epoch": 1, "logs": {"loss": 0.25, "accuracy": 0.5}})
    view(1, {"event": "line", "text": "worker 1: loss 0.2500 (the chief records the run)"})
    view.close()
    assert capsys.readouterr().err.splitlines() == [
        "chief: started (pid 11, 127.0.0.1:5000)",
        "worker 1: started (pid 12, 127.0.0.1:5001)",
        "chief: epoch 1/2  loss 0.2500  accuracy 0.5000",
        "worker 1: loss 0.2500 (the chief records the run)",
    ]
    assert view.states == {0: "epoch 1/2 done", 1: "epoch 1/2 done"}


def test_cluster_view_rich_does_not_lose_the_chief_epochs(capsys):
    from maasctl.cli.train_cluster import ClusterView

    view = ClusterView(2, tty=True)  # rich bars (not live here: capsys is no terminal)
    view(0, {"event": "started", "pid": 11, "address": "127.0.0.1:5000"})
    view(0, {"event": "start", "epochs": 1, "steps": 3})
    view(0, {"event": "epoch_start", "epoch": 1})
    view(0, {"event": "batch", "step": 3, "logs": {"loss": 0.5}})
    view(0, {"event": "epoch_end", "epoch": 1, "logs": {"loss": 0.25}})
    view(0, {"event": "end"})
    view.close()
    assert "chief: epoch 1/1  loss 0.2500" in capsys.readouterr().err
    assert view.states[0] == "saving" and view.states[1] == "starting"


# -- sharding by file (the parts without TensorFlow) ----------------------------------------------------------
def test_plan_files_gives_each_rank_every_nth_file():
    from maasctl.training.shard import plan_files, rank_of

    names = [f"/d/p{i}.csv" for i in range(5)]
    ranks = {}
    for task, index in (("chief", 0), ("worker", 0), ("worker", 1)):
        plan = resolve("multi_worker", {"TF_CONFIG": tfc({"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}, task, index)})
        assert plan.cluster is not None
        mine, note = plan_files(plan, names, 30)
        ranks[rank_of(plan.cluster)] = mine
        assert note == f"reads {len(mine)} of 5 files (sharded by file): " + ", ".join(names[i] for i in mine)
    assert ranks == {0: [0, 3], 1: [1, 4], 2: [2]}
    from maasctl.training.shard import task_of_rank

    assert [task_of_rank(plan.cluster, r) for r in range(3)] == ["chief 0 (h0:1)", "worker 0 (h1:1)", "worker 1 (h2:1)"]
    two = parse_tf_config(tfc(TWO, "worker", 1))
    assert two is not None and task_of_rank(two, 1) == "worker 1 (127.0.0.1:2002)"


def test_plan_files_falls_back_to_sharding_by_data():
    from maasctl.training.shard import plan_files

    two = resolve("auto", {"TF_CONFIG": tfc(TWO, "worker", 1)})
    assert plan_files(two, ["/d/a.csv"], 16) == (None, ("reads every file (/d/a.csv): 1 file for 2 workers, so "
                                                        "batches are sharded by data"))
    assert plan_files(two, ["/d/a.csv", "/d/b.csv"], 15)[1].endswith(
        "train.batch_size 15 is not a multiple of the 2 workers, so batches are sharded by data")
    assert plan_files(resolve("none", {}), ["/d/a.csv", "/d/b.csv"], 16) == (None, "reads every file (/d/a.csv, "
                                                                                  + "/d/b.csv)")


SHARD_TOML = """
[data]
path = "p*.csv"
label = "label"
validation_split = 0.25
shuffle = false
[model]
task = "classification"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
[train]
batch_size = 4
"""


def test_a_worker_reads_only_its_files_and_merges_labels(tmp_path):
    """In-process: worker 1 of 2 reads p1.csv only (p0 and p2 are unreadable garbage here); its labels stay raw
    until merged with worker 0's report, which adds a class it never saw."""
    from maasctl.training.data import prepare
    from maasctl.training.shard import merge, shard_doc

    (tmp_path / "t.toml").write_text(SHARD_TOML)
    for name in ("p0.csv", "p2.csv"):
        (tmp_path / name).write_bytes(b"\xff not worker 1's file")
    (tmp_path / "p1.csv").write_text("a,b,label\n" + "".join(f"{i},{i * 2},{'2' if i % 2 else '10'}\n"
                                                             for i in range(8)))
    cfg, ds = prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 1)})
    assert ds.shard is not None and ds.class_names is None and (len(ds.x_train), len(ds.x_val)) == (6, 2)
    assert ds.reading == f"reads 1 of 3 files (sharded by file): {tmp_path}/p1.csv"
    assert ds.describe().startswith("data (this worker's shard): 8 rows (6 training, 2 validation)")
    other = {"rank": 0, "role": "chief", "names": ["p0.csv", "p1.csv", "p2.csv"], "features": ["a", "b"],
             "tokens": ["1.0", "10"], "n_outputs": None,
             "files": [{"role": "train", "path": f"{tmp_path}/p0.csv", "size": 1, "sha256": "0"},
                       {"role": "train", "path": f"{tmp_path}/p2.csv", "size": 1, "sha256": "2"}]}
    merge(cfg, ds, [other, shard_doc(ds)])
    assert ds.class_names == ["1", "2", "10"]  # numeric order over every worker's labels
    assert ds.y_train.tolist() == [2, 1, 2, 1, 2, 1] and ds.y_val.tolist() == [2, 1]
    assert [f["path"] for f in ds.files] == [f"{tmp_path}/p{i}.csv" for i in range(3)]
    bad = {**other, "features": ["a", "c"]}
    cfg, ds = prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 1)})
    with pytest.raises(InvalidInput, match=r"^\S+/p1\.csv: feature column 'c' \(of \S+/p0\.csv\) not found; "
                                           r"feature columns found: a, b$"):
        merge(cfg, ds, [bad, shard_doc(ds)])
    # every worker must list the same files (a host whose folder holds another set would read the wrong ones)
    for names, what in ((["p0.csv", "p1.csv", "p2.csv", "p3.csv"], "3 files there but 4 on chief"),
                        (["p0.csv", "p1.csv", "p9.csv"], "file 3 is p2.csv there but p9.csv on chief")):
        cfg, ds = prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 1)})
        with pytest.raises(InvalidInput, match=rf"t\.toml: data\.path: worker 1 lists other files than chief "
                                               rf"\({what}\); sharding by file needs every worker to list the same "
                                               rf"files$"):
            merge(cfg, ds, [{**other, "names": names}, shard_doc(ds, "worker 1")])


def test_a_worker_takes_the_first_files_column_order(tmp_path):
    """One process reads every file's feature columns by name, in the first file's order; so does a worker whose
    file names them in another order (or has more): its columns are reordered, not refused."""
    from maasctl.training.data import prepare
    from maasctl.training.shard import merge, shard_doc

    (tmp_path / "t.toml").write_text(SHARD_TOML)
    (tmp_path / "p0.csv").write_bytes(b"\xff not worker 1's file")
    (tmp_path / "p1.csv").write_text("extra,b,label,a\n" + "".join(f"{-i},{i * 2},{i % 3},{i}\n" for i in range(8)))
    other = {"rank": 0, "role": "chief", "names": ["p0.csv", "p1.csv"], "features": ["a", "b"],
             "tokens": ["0", "1", "2"], "n_outputs": None,
             "files": [{"role": "train", "path": f"{tmp_path}/p0.csv", "size": 1, "sha256": "0"}]}
    cfg, ds = prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 1)})
    assert ds.feature_names == ["extra", "b", "a"]
    merge(cfg, ds, [other, shard_doc(ds)])
    assert ds.feature_names == ["a", "b"] and ds.n_features == 2
    assert ds.x_train.tolist() == [[i, i * 2] for i in range(6)] and ds.x_val.tolist() == [[6, 12], [7, 14]]


def test_shard_steps_are_the_largest_shards():
    from maasctl.training.shard import Shard

    shard = Shard(rank=0, n_workers=2, names=["a", "b"], mine=[0], batch_size=16)
    assert (shard.per_worker_batch, shard.steps([32, 33]), shard.steps([1, 0])) == (8, 5, 1)


def test_the_record_names_each_workers_files_absolute(tmp_path, monkeypatch):
    """A relative config path gives relative file names (as the logs show them); the run record's
    distribute.worker_files are absolute, as its lineage's data_files."""
    from maasctl.training.distribute import describe_cluster
    from maasctl.training.shard import Shard

    monkeypatch.chdir(tmp_path)
    shard = Shard(rank=0, n_workers=2, names=["p0.csv", "s3://b/p1.csv", "d/p2.csv"], mine=[0, 2], batch_size=4,
                  train_rows=[5, 3])
    plan = resolve("multi_worker", {"TF_CONFIG": tfc(TWO, "worker", 0)})
    assert describe_cluster(plan, shard) == {
        "mode": "multi_worker", "workers": 2, "shard": "file", "worker_train_rows": [5, 3],
        "worker_files": [[f"{tmp_path.resolve()}/p0.csv", f"{tmp_path.resolve()}/d/p2.csv"], ["s3://b/p1.csv"]]}


def test_a_worker_that_cannot_read_its_own_files_says_so_to_the_others(tmp_path):
    """Sharded by file, bad input in this worker's own files is ShardUnreadable (same message and exit status),
    which becomes its error report; the others' error names it. A file every worker reads fails as before."""
    from maasctl.errors import NotFound
    from maasctl.training.data import prepare
    from maasctl.training.shard import ShardUnreadable, error_doc, reported_failure

    (tmp_path / "t.toml").write_text(SHARD_TOML)
    (tmp_path / "p0.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    (tmp_path / "p1.csv").write_text("a,b,label\n1,2,x\n3,?,y\n")
    with pytest.raises(ShardUnreadable, match=rf"^{tmp_path}/p1\.csv:3: column 'b': ") as info:
        prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 1)})
    assert info.value.exit_code == 2 and isinstance(info.value.cause, InvalidInput)
    doc = error_doc(info.value)
    assert doc == {"rank": 1, "role": "worker 1", "error": str(info.value), "exit": 2}
    chief = resolve("multi_worker", {"TF_CONFIG": tfc(TWO, "worker", 0)})
    failure = reported_failure(chief, [{"rank": 0, "names": []}, json.loads(json.dumps(doc))])
    assert isinstance(failure, InvalidInput) and str(failure) == (
        f"chief: worker 1 (127.0.0.1:2002) could not read its data: {info.value}; no run committed")
    assert reported_failure(chief, [{"rank": 0}, {"rank": 1}]) is None
    (tmp_path / "p1.csv").unlink()  # a missing file of its own: exit 3
    with pytest.raises(ShardUnreadable, match=r"data\.path: file not found: \S+/p1\.csv$") as info:
        prepare(tmp_path / "t.toml", ('data.path = ["p0.csv", "p1.csv"]',), env={"TF_CONFIG": tfc(TWO, "worker", 1)})
    assert info.value.exit_code == 3 and isinstance(reported_failure(chief, [error_doc(info.value)]), NotFound)
    (tmp_path / "p1.csv").write_text("a,b,label\n1,2,x\n3,?,y\n")
    (tmp_path / "t.toml").write_text(SHARD_TOML.replace("batch_size = 4", "batch_size = 3"))  # sharded by data
    with pytest.raises(InvalidInput, match=r"p1\.csv:3: column 'b'") as plain:
        prepare(tmp_path / "t.toml", env={"TF_CONFIG": tfc(TWO, "worker", 0)})
    assert not isinstance(plain.value, ShardUnreadable)
