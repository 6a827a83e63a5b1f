"""Prometheus text exposition written by hand: counters, cumulative histograms, label escaping."""

from __future__ import annotations

from maasctl.serving.metrics import Metrics


def test_text_format():
    m = Metrics(lambda: {"iris": 2})
    m.requests.inc("iris", "3", "predict", "200")
    m.requests.inc("iris", "3", "predict", "200")
    m.requests.inc('we"ird\n', "", "predict", "404")
    for rows in (1, 3, 3, 100):
        m.batch_size.observe(rows, "iris", "3")
    lines = m.render().decode().splitlines()
    assert "# TYPE maasctl_requests_total counter" in lines
    assert 'maasctl_requests_total{model="iris",version="3",api="predict",code="200"} 2' in lines
    assert 'maasctl_requests_total{model="we\\"ird\\n",version="",api="predict",code="404"} 1' in lines
    buckets = [ln for ln in lines if ln.startswith("maasctl_batch_size_rows_bucket")]
    assert 'maasctl_batch_size_rows_bucket{model="iris",version="3",le="1"} 1' in buckets
    assert 'maasctl_batch_size_rows_bucket{model="iris",version="3",le="4"} 3' in buckets
    assert 'maasctl_batch_size_rows_bucket{model="iris",version="3",le="64"} 3' in buckets
    assert 'maasctl_batch_size_rows_bucket{model="iris",version="3",le="+Inf"} 4' in buckets
    counts = [int(b.rsplit(" ", 1)[1]) for b in buckets]
    assert counts == sorted(counts)  # cumulative
    assert 'maasctl_batch_size_rows_sum{model="iris",version="3"} 107.0' in lines
    assert 'maasctl_batch_size_rows_count{model="iris",version="3"} 4' in lines
    assert 'maasctl_loaded_versions{model="iris"} 2' in lines
    assert m.render().endswith(b"\n")
