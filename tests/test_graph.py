"""Graph modality (InfoGraph on TU data sets): data checks, cache, masks, parity, end to end."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardneg.errors import ConfigError, DataError, HardnegError
from hardneg.objective import Objective
from hardneg.spec import LossSpec, RunSpec, TrainSpec

graph = pytest.importorskip("modalities.graph")
tu_data = pytest.importorskip("modalities.graph.data")
from modalities.graph import (GraphAdapter, InfoGraphModel, build_tu_cache, gather_graphs, load_tu,  # noqa: E402
                              node_graph_masks, validate_tu_raw)

DATA = Path(os.environ.get("HARDNEG_DATA", "/work/shared/data"))
HAVE_TU = (DATA / "tudataset" / "MUTAG" / "raw" / "MUTAG_A.txt").is_file()
needs_data = pytest.mark.skipif(not HAVE_TU, reason="real TU data not under HARDNEG_DATA")


# ---- small TU data sets written by the tests ------------------------------------------
def write_tu(root: Path, name: str, graphs: list[tuple[int, list[tuple[int, int]], int]], *,
             node_labels: list[int] | None = None, indicator: list[int] | None = None,
             labels: list[int] | None = None) -> Path:
    """Write a TU-format data set: graphs = [(num_nodes, local undirected edges, class)]."""
    raw = root / "tudataset" / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    ind, edges, offset = [], [], 0
    for gi, (n, es, _) in enumerate(graphs):
        ind += [gi + 1] * n
        for u, v in es:
            edges += [(offset + u + 1, offset + v + 1), (offset + v + 1, offset + u + 1)]
        offset += n
    (raw / f"{name}_A.txt").write_text("".join(f"{u}, {v}\n" for u, v in edges))
    (raw / f"{name}_graph_indicator.txt").write_text("".join(f"{g}\n" for g in (indicator or ind)))
    (raw / f"{name}_graph_labels.txt").write_text(
        "".join(f"{c}\n" for c in (labels if labels is not None else [g[2] for g in graphs])))
    if node_labels is not None:
        (raw / f"{name}_node_labels.txt").write_text("".join(f"{x}\n" for x in node_labels))
    return raw


def toy_graphs(n_graphs: int = 24, seed: int = 0) -> list[tuple[int, list[tuple[int, int]], int]]:
    """Class 0: paths; class 1: cycles with a chord (different structure, learnable)."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n_graphs):
        n = int(rng.integers(4, 9))
        es = [(i, i + 1) for i in range(n - 1)]
        if g % 2:
            es += [(n - 1, 0), (0, n // 2)]
        out.append((n, es, g % 2))
    return out


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setenv("HARDNEG_CACHE", str(c))
    return c


# ---- bad input ---------------------------------------------------------------------------
def test_missing_raw_files_named(tmp_path, cache):
    raw = write_tu(tmp_path, "TOY", toy_graphs(6))
    (raw / "TOY_graph_labels.txt").unlink()
    with pytest.raises(DataError, match=r"missing raw file\(s\) TOY_graph_labels\.txt.*expected TOY_A\.txt, "
                                        r"TOY_graph_indicator\.txt, TOY_graph_labels\.txt.*run with --download"):
        load_tu(tmp_path, "tu:TOY", log=lambda s: None)
    with pytest.raises(DataError, match=r"NOPE.*does not exist.*NOPE_A\.txt"):
        load_tu(tmp_path, "tu:NOPE", log=lambda s: None)


def test_graph_without_nodes(tmp_path, cache):
    gs = toy_graphs(6)
    raw = write_tu(tmp_path, "TOY", gs)
    ind = [int(x) for x in (raw / "TOY_graph_indicator.txt").read_text().split()]
    # relabel graph 3's nodes as graph 2 (and the edges stay inside graph 2): graph 3 becomes empty
    ind = [2 if g == 3 else g for g in ind]
    (raw / "TOY_graph_indicator.txt").write_text("".join(f"{g}\n" for g in ind))
    with pytest.raises(DataError, match=r"1 graph\(s\) have no nodes.*graph ids 3"):
        validate_tu_raw(raw, "TOY")


def test_mismatched_indicator_files(tmp_path, cache):
    gs = toy_graphs(6)
    raw = write_tu(tmp_path, "TOY", gs, labels=[0, 1, 0, 1, 0])        # 5 labels for 6 graphs
    with pytest.raises(DataError, match=r"graph ids 1\.\.6.*5 line\(s\).*mismatched"):
        validate_tu_raw(raw, "TOY")
    n = sum(g[0] for g in gs)
    raw = write_tu(tmp_path, "TOY2", gs, node_labels=[0] * (n - 1))    # one node label short
    with pytest.raises(DataError, match=rf"TOY2_node_labels\.txt has {n - 1} line.*{n} node"):
        validate_tu_raw(raw, "TOY2")
    raw = write_tu(tmp_path, "TOY3", gs)
    ind = (raw / "TOY3_graph_indicator.txt").read_text().split()
    ind[0], ind[-1] = ind[-1], ind[0]                                    # not grouped by graph
    (raw / "TOY3_graph_indicator.txt").write_text("\n".join(ind) + "\n")
    with pytest.raises(DataError, match=r"non-decreasing"):
        validate_tu_raw(raw, "TOY3")
    raw = write_tu(tmp_path, "TOY4", gs)
    with open(raw / "TOY4_A.txt", "a") as fh:
        fh.write(f"1, {n}\n")                                            # joins graph 1 and graph 6
    with pytest.raises(DataError, match=r"edge \(1, \d+\) joins graphs 1 and 6"):
        validate_tu_raw(raw, "TOY4")
    (raw / "TOY4_A.txt").write_text("1, x\n")
    with pytest.raises(DataError, match=r"TOY4_A\.txt cannot be parsed as comma-separated integers: line 1 is '1, x'"):
        validate_tu_raw(raw, "TOY4")


@pytest.mark.parametrize("which", ["node_labels", "edge_labels", "graph_labels"])
def test_non_numeric_label_line_names_file_and_line(tmp_path, cache, which):
    graphs = toy_graphs(6)
    n_nodes = sum(g[0] for g in graphs)
    raw = write_tu(tmp_path, "TOY5", graphs, node_labels=[0] * n_nodes)
    n_edges = len((raw / "TOY5_A.txt").read_text().splitlines())
    rows = {"node_labels": n_nodes, "edge_labels": n_edges, "graph_labels": len(graphs)}[which]
    lines = ["1"] * rows
    lines[2] = "C"                               # e.g. an atom symbol where an id belongs
    (raw / f"TOY5_{which}.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"TOY5_{which}\.txt cannot be parsed as comma-separated integers: "
                                        r"line 3 is 'C'"):
        validate_tu_raw(raw, "TOY5")


def test_edge_label_count_must_match_edges(tmp_path, cache):
    raw = write_tu(tmp_path, "TOY6", toy_graphs(6))
    (raw / "TOY6_edge_labels.txt").write_text("0\n1\n")
    with pytest.raises(DataError, match=r"TOY6_edge_labels\.txt has 2 line\(s\) but TOY6_A\.txt lists \d+ edge"):
        validate_tu_raw(raw, "TOY6")


def test_batch_larger_than_the_data_set_is_refused(tmp_path, cache):
    from hardneg.train import execute
    write_tu(tmp_path, "TOY7", toy_graphs(12))
    spec = RunSpec("graph", "tu:TOY7", 0, LossSpec(objective="jsd", temperature=1.0),
                   TrainSpec(epochs=1, batch_size=64, threads=1), {"svc_outer_folds": 2, "svc_inner_folds": 2})
    with pytest.raises(ConfigError, match=r"train.batch_size=64 is larger than the 12 graphs of 'tu:TOY7'; "
                                          r"allowed: batch_size <= 12"):
        execute(spec, data_root=tmp_path, log=lambda s: None)


def test_unknown_dataset_and_options():
    a = GraphAdapter()
    with pytest.raises(ConfigError, match=r"unknown graph data set 'MUTAGG'; allowed: MUTAG, PTC_MR"):
        a.check_dataset("MUTAGG")
    a.check_dataset("tu:ANY_OTHER")
    with pytest.raises(ConfigError, match=r"scores='dot' is not allowed; allowed: 'raw', 'cosine'"):
        a.resolve_options({"scores": "dot"})
    with pytest.raises(ConfigError, match=r"not a valid TU name"):
        graph.tu_name("tu:../etc")


def test_cache_is_atomic_after_a_crash(tmp_path, cache, monkeypatch):
    raw = write_tu(tmp_path, "TOY", toy_graphs(8))
    real_pack = tu_data._pack_tudataset

    def crash(ds):
        raise RuntimeError("simulated crash while packing")
    monkeypatch.setattr(tu_data, "_pack_tudataset", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_tu_cache(raw, "TOY", log=lambda s: None)
    entries = [p.name for p in (cache / "tudataset").iterdir()]
    assert entries == [], f"partial cache left behind: {entries}"
    # debris of a killed (SIGKILL) build is removed once it is old enough
    digest = tu_data.fingerprint_files(sorted(raw.glob("TOY_*.txt")), root=raw)
    debris = cache / "tudataset" / f".tmp-TOY-{digest[:16]}-killed"
    (debris / "TOY" / "processed").mkdir(parents=True)
    os.utime(debris, (0, 0))
    monkeypatch.setattr(tu_data, "_pack_tudataset", real_pack)
    data, digest = load_tu(tmp_path, "tu:TOY", log=lambda s: None)
    assert data.num_graphs == 8 and len(digest) == 64
    assert not debris.exists()
    # a damaged entry (packed file lost) is detected and rebuilt, not trusted
    entry = next((cache / "tudataset").iterdir())
    (entry / "packed.pt").unlink()
    data2, _ = load_tu(tmp_path, "tu:TOY", log=lambda s: None)
    assert torch.equal(data2.edge_index, data.edge_index)


def test_unwritable_cache_and_readonly_data_root(tmp_path, monkeypatch):
    write_tu(tmp_path / "data", "TOY", toy_graphs(8))
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("HARDNEG_CACHE", str(blocker / "cache"))
    with pytest.raises(DataError, match=r"cache"):
        load_tu(tmp_path / "data", "tu:TOY", log=lambda s: None)
    # a read-only data root is never written to: processed/ goes to the cache
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    before = sorted(str(p) for p in (tmp_path / "data").rglob("*"))
    os.chmod(tmp_path / "data" / "tudataset" / "TOY" / "raw", 0o555)
    try:
        data, _ = load_tu(tmp_path / "data", "tu:TOY", log=lambda s: None)
    finally:
        os.chmod(tmp_path / "data" / "tudataset" / "TOY" / "raw", 0o755)
    assert sorted(str(p) for p in (tmp_path / "data").rglob("*")) == before
    assert list((tmp_path / "cache" / "tudataset").glob("TOY-*/TOY/processed/data.pt"))
    assert data.num_graphs == 8


# ---- download from the TU collection (served on 127.0.0.1) -------------------------------
@pytest.fixture()
def tu_server(tmp_path):
    """Serves /TOY.zip (the TU layout: TOY/TOY_*.txt), /BAD.zip (not a zip), /NOLABELS.zip."""
    import http.server
    import io
    import threading
    import zipfile
    src = write_tu(tmp_path / "src", "TOY", toy_graphs(8))
    blobs = {}
    for name, skip in (("TOY", None), ("NOLABELS", "TOY_graph_labels.txt")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for f in sorted(src.iterdir()):
                if f.name != skip:
                    zf.write(f, f"{name}/{f.name.replace('TOY', name)}")
            zf.writestr(f"{name}/README.txt", "not a data file")
        blobs[f"/{name}.zip"] = buf.getvalue()
    blobs["/BAD.zip"] = b"PK this is not a zip archive"  # (an HTML page is caught earlier, by download)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = blobs.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_tu_download_from_a_local_server(tmp_path, cache, tu_server, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setattr(tu_data, "TU_URL", tu_server + "/{name}.zip")
    monkeypatch.delenv("HARDNEG_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(DataError, match=r"folder .*TOY.* does not exist.*run with --download"):
        load_tu(root, "tu:TOY", log=lambda s: None)                     # downloads are off by default
    monkeypatch.setenv("HARDNEG_ALLOW_DOWNLOAD", "1")
    data, digest = load_tu(root, "tu:TOY", log=lambda s: None)
    raw = root / "tudataset" / "TOY" / "raw"
    assert data.num_graphs == 8 and sorted(p.name for p in raw.iterdir()) == [
        "TOY_A.txt", "TOY_graph_indicator.txt", "TOY_graph_labels.txt"]  # the README is not copied
    assert digest == tu_data.fingerprint_files(sorted(raw.iterdir()), root=raw)
    # a server answering with something that is not a zip, or a zip without a required file
    for name, match in (("BAD", "did not give a zip archive"), ("NOLABELS", "lacks NOLABELS_graph_labels.txt")):
        with pytest.raises(DataError, match=match):
            load_tu(root, f"tu:{name}", log=lambda s: None)
        assert not (root / "tudataset" / name / "raw").exists()        # nothing half-filled left behind
        assert not (root / "tudataset" / name).exists() or not any((root / "tudataset" / name).iterdir())
    # offline: the URL is named
    monkeypatch.setattr(tu_data, "TU_URL", "http://127.0.0.1:9/{name}.zip")
    with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/OTHER.zip"):
        load_tu(root, "tu:OTHER", log=lambda s: None)


# ---- features, batching, masks -----------------------------------------------------------
def test_degree_features_one_hot_and_normalised(tmp_path, cache):
    write_tu(tmp_path, "TOY", toy_graphs(8))
    data, _ = load_tu(tmp_path, "tu:TOY", log=lambda s: None)
    deg = torch.bincount(data.edge_index[0], minlength=data.x.size(0))
    assert data.feature_kind == f"degree-onehot({int(deg.max()) + 1})"
    assert torch.equal(data.x.argmax(1), deg) and torch.all(data.x.sum(1) == 1)
    star = [(1002, [(0, i) for i in range(1, 1002)], 0), (3, [(0, 1), (1, 2)], 1)]
    write_tu(tmp_path, "STAR", star)
    data, _ = load_tu(tmp_path, "tu:STAR", log=lambda s: None)
    assert data.feature_kind == "degree-normalised" and data.x.shape == (1005, 1)
    d = torch.bincount(data.edge_index[0], minlength=1005).float()
    assert torch.allclose(data.x[:, 0], (d - d.mean()) / d.std())
    labelled = toy_graphs(4)
    write_tu(tmp_path, "LAB", labelled, node_labels=[(i % 3) + 1 for i in range(sum(g[0] for g in labelled))])
    data, _ = load_tu(tmp_path, "tu:LAB", log=lambda s: None)
    assert data.feature_kind == "node-labels-onehot(3)"
    assert torch.equal(data.x.argmax(1), torch.arange(data.x.size(0)) % 3)
    data, _ = load_tu(tmp_path, "tu:LAB", node_features="constant", log=lambda s: None)
    assert data.x.shape[1] == 1 and torch.all(data.x == 1)


@needs_data
def test_real_mutag_and_batches_match_pyg(tmp_path, cache):
    from torch_geometric.data import Batch
    from torch_geometric.datasets import TUDataset
    data, _ = load_tu(DATA, "MUTAG", log=lambda s: None)
    assert (data.num_graphs, data.x.shape, int(data.y.max()) + 1) == (188, (3371, 7), 2)
    entry = next((cache / "tudataset").glob("MUTAG-*"))
    ds = TUDataset(str(entry), "MUTAG")
    ids = torch.tensor([5, 0, 187, 42, 42, 17])
    ours = gather_graphs(data, ids)
    ref = Batch.from_data_list([ds[int(i)] for i in ids])
    assert torch.equal(ours.x, ref.x) and torch.equal(ours.edge_index, ref.edge_index)
    assert torch.equal(ours.batch, ref.batch) and torch.equal(ours.y, ref.y) and ours.num_graphs == 6


def test_masks_vectorised_equal_loop():
    batch = torch.repeat_interleave(torch.arange(7), torch.tensor([3, 1, 5, 2, 2, 4, 1]))
    pos, neg = node_graph_masks(batch, 7)
    pos_l, neg_l = torch.zeros(18, 7, dtype=torch.bool), torch.ones(18, 7, dtype=torch.bool)
    for node, g in enumerate(batch.tolist()):    # the authors' per-node construction
        pos_l[node, g], neg_l[node, g] = True, False
    assert pos.dtype == torch.bool and torch.equal(pos, pos_l) and torch.equal(neg, neg_l)
    assert torch.equal(pos.sum(1), torch.ones(18, dtype=torch.long)) and not (pos & neg).any()
    assert torch.equal(pos.long().argmax(1), batch)


def test_encoder_shapes_and_score_batch(tmp_path, cache):
    write_tu(tmp_path, "TOY", toy_graphs(10))
    data, _ = load_tu(tmp_path, "tu:TOY", log=lambda s: None)
    model = InfoGraphModel(data.x.size(1), hidden=32, layers=3, generator=torch.Generator().manual_seed(0))
    b = gather_graphs(data, torch.arange(10))
    g, node = model.encoder(b.x, b.edge_index, b.batch, b.num_graphs)
    assert g.shape == (10, 96) and node.shape == (b.x.size(0), 96)
    # graph embedding = per-graph sum of the node states (sum pooling, concatenated layers)
    assert torch.allclose(g, torch.zeros(10, 96).index_add_(0, b.batch, node), atol=1e-5)
    assert len(model.local_d.block) == 6 and isinstance(model.local_d.shortcut, torch.nn.Linear)


# ---- objectives: parity with the authors' formulas -------------------------------------
def _authors_jsd_hard(l_enc, g_enc, batch, beta, tau_plus):
    """The authors' JSD / JSD_hard written out from their formulas, with their per-node loop."""
    num_graphs, num_nodes = g_enc.shape[0], l_enc.shape[0]
    pos_mask = torch.zeros((num_nodes, num_graphs))
    neg_mask = torch.ones((num_nodes, num_graphs))
    for nodeidx, graphidx in enumerate(batch):
        pos_mask[nodeidx][graphidx] = 1.
        neg_mask[nodeidx][graphidx] = 0.
    res = l_enc @ g_enc.t()
    p, q = res * pos_mask, res * neg_mask
    log2 = math.log(2.0)
    e_pos = log2 - F.softplus(-p) - (tau_plus / (1 - tau_plus)) * (F.softplus(-p) + p)
    if beta == 0:
        e_neg = (F.softplus(-q) + q - log2) / (1 - tau_plus)
    else:
        r = (beta * (-2 * q / max(q.max(), q.min().abs()))).exp()
        r = r / r.mean(dim=1).view(-1, 1)
        e_neg = r * (F.softplus(-q) + q) / (1 - tau_plus) - log2
    return e_neg.sum() / (num_nodes * (num_graphs - 1)) - e_pos.sum() / num_nodes


@pytest.mark.parametrize("beta,tau", [(0.0, 0.0), (0.0, 0.5), (1.0, 0.5), (10.0, 0.5)])
def test_authors_convention_parity_through_adapter(tmp_path, cache, beta, tau):
    write_tu(tmp_path, "TOY", toy_graphs(12))
    spec = RunSpec("graph", "tu:TOY", loss=LossSpec(objective="jsd", beta=beta, tau_plus=tau, temperature=1.0,
                                                    jsd_convention="authors"),
                   train=TrainSpec(epochs=1, batch_size=12))
    adapter, run = _context(tmp_path, spec)
    model = adapter.build_model(run).double()
    adapter.data.x = adapter.data.x.double()
    b = next(iter(adapter.train_batches(run, 0)))
    sb = adapter.score_batch(model, b, run)
    assert sb.score_kind == "raw" and torch.equal(sb.anchor_labels, b.y[b.batch])
    ours = Objective(spec.loss)(sb).loss
    local, glob = model(b)
    ref = _authors_jsd_hard(local, glob, b.batch, beta, tau)
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9), (float(ours), float(ref))
    if beta == 0 and tau == 0:   # plain JSD: both conventions agree
        derived = Objective(LossSpec(objective="jsd", temperature=1.0))(sb).loss
        assert torch.allclose(derived, ref, rtol=1e-9, atol=1e-9)


def test_infonce_on_node_graph_scores(tmp_path, cache):
    write_tu(tmp_path, "TOY", toy_graphs(12))
    spec = RunSpec("graph", "tu:TOY", loss=LossSpec(objective="infonce", beta=1.0, tau_plus=0.1, temperature=1.0),
                   train=TrainSpec(epochs=1, batch_size=12))
    adapter, run = _context(tmp_path, spec)
    model = adapter.build_model(run)
    sb = adapter.score_batch(model, next(iter(adapter.train_batches(run, 0))), run)
    out = Objective(spec.loss)(sb, details=True)
    assert torch.isfinite(out.loss) and out.per_anchor.shape == (sb.scores.shape[0],)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def _context(tmp_path, spec):
    from hardneg.adapters import open_run
    a = GraphAdapter()
    run = open_run(a, spec, data_root=tmp_path, cache_dir=tmp_path / "c", device="cpu", log=lambda s: None)
    a.prepare(run)
    return a, run


def test_batches_cover_every_graph_and_fold_singletons(tmp_path, cache):
    write_tu(tmp_path, "TOY", toy_graphs(9))
    spec = RunSpec("graph", "tu:TOY", train=TrainSpec(epochs=1, batch_size=4))
    a, run = _context(tmp_path, spec)
    batches = list(a.train_batches(run, 0))
    assert [b.num_graphs for b in batches] == [4, 5]       # 4 + 4 + 1 -> the single graph folds in
    assert run.counters["merged_single_graph_batches"] == 1
    assert sum(int(b.x.size(0)) for b in batches) == int(a.data.node_ptr[-1])


# ---- end to end through the shared trainer ----------------------------------------------
def test_execute_end_to_end_and_floor(tmp_path, cache):
    from hardneg.train import execute
    write_tu(tmp_path, "TOY", toy_graphs(40))
    opts = {"svc_outer_folds": 4, "svc_inner_folds": 2, "hidden": 8}
    common = dict(loss=LossSpec(objective="jsd", temperature=1.0, beta=1.0, tau_plus=0.1), options=opts)
    rec = execute(RunSpec("graph", "tu:TOY", seed=1, train=TrainSpec(epochs=2, batch_size=16, threads=1), **common),
                  data_root=tmp_path, log=lambda s: None)
    (m,) = rec["metrics"]
    assert m["metric"] == "svc_acc" and 0 <= m["value"] <= 100 and m["selection"] == "last-epoch"
    assert "percent" in m["protocol"] and m["std"] is not None
    assert len(rec["curves"]) == 2 and "diag_ess" in rec["curves"][0]
    assert rec["data_checksums"] and rec["method"] == "hard-jsd"
    rec0 = execute(RunSpec("graph", "tu:TOY", seed=1, train=TrainSpec(epochs=0, batch_size=16, threads=1), **common),
                   data_root=tmp_path, log=lambda s: None)
    assert rec0["method"] == "random-init" and rec0["curves"] == [] and rec0["metrics"][0]["metric"] == "svc_acc"
    again = execute(RunSpec("graph", "tu:TOY", seed=1, train=TrainSpec(epochs=2, batch_size=16, threads=1), **common),
                    data_root=tmp_path, log=lambda s: None)
    assert again["metrics"] == rec["metrics"], "a CPU run must be reproducible from its seed"
    with pytest.raises(HardnegError, match=r"unknown graph data set"):
        execute(RunSpec("graph", "NOT_A_SET"), data_root=tmp_path, log=lambda s: None)


def test_graphs_without_edges_are_kept(tmp_path, cache):
    # edgeless graphs in the middle and at the end (torch_geometric's reader drops trailing ones)
    gs = [(3, [(0, 1), (1, 2)], 0), (2, [], 1), (4, [(0, 1), (2, 3)], 0), (1, [], 1)]
    write_tu(tmp_path, "ISO", gs)
    data, _ = load_tu(tmp_path, "tu:ISO", log=lambda s: None)
    assert data.node_ptr.tolist() == [0, 3, 5, 9, 10] and data.edge_ptr.tolist() == [0, 4, 4, 8, 8]
    b = gather_graphs(data, torch.tensor([3, 1, 0]))
    assert b.batch.tolist() == [0, 1, 1, 2, 2, 2] and b.edge_index.tolist() == [[3, 4, 4, 5], [4, 3, 5, 4]]


def test_graph_adapter_conforms(tmp_path, cache):
    from hardneg.testing import check_adapter
    write_tu(tmp_path, "TOY", toy_graphs(40))
    check_adapter("graph", dataset="tu:TOY", options={"hidden": 8, "svc_outer_folds": 4, "svc_inner_folds": 2},
                  data_root=tmp_path)


# ---- the 'logit' JSD convention on cosine scores -------------------------------------------
def _cosine_batch(seed: int = 0, nodes: int = 40, graphs: int = 8):
    g = torch.Generator().manual_seed(seed)
    batch = torch.arange(nodes) % graphs
    local = F.normalize(torch.randn(nodes, 16, generator=g, dtype=torch.float64), dim=1)
    glob = F.normalize(torch.randn(graphs, 16, generator=g, dtype=torch.float64), dim=1)
    pos, neg = node_graph_masks(batch, graphs)
    return local @ glob.T, pos, neg


def test_logit_convention_limits_equal_plain_jsd_and_infonce():
    """beta = tau+ = 0: the 'logit' JSD is InfoGraph's JSD on s / t, written out here; InfoNCE on
    the same cosine scores is softmax cross-entropy over the node's graphs."""
    from hardneg.losses import contrastive_loss, jsd_loss
    s, pos, neg = _cosine_batch()
    t = 0.5
    l = s / t
    ref = (F.softplus(-l[pos]) + (F.softplus(l) * neg).sum(1) / neg.sum(1) - 2 * math.log(2)).mean()
    got = jsd_loss(s, pos, neg, convention="logit", temperature=t, min_score=-1.0)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for conv in ("derived", "authors"):
        torch.testing.assert_close(jsd_loss(s, pos, neg, convention=conv, temperature=t), ref, rtol=1e-12, atol=1e-12)
    nce = contrastive_loss(s, pos, neg, beta=0.0, tau_plus=0.0, temperature=t, min_score=-1.0)
    torch.testing.assert_close(nce, F.cross_entropy(l, batch_target(pos)), rtol=1e-12, atol=1e-12)


def batch_target(pos: torch.Tensor) -> torch.Tensor:
    return pos.long().argmax(1)


def test_logit_convention_ess_falls_with_beta_on_fixed_scores():
    """w = exp(beta s / t) tilts on bounded scores: the ESS of the weights falls strictly with
    beta, while the 'derived' weights (2 beta s / max|s| on raw dot products of size ~500) stay
    nearly uniform."""
    from hardneg.losses import jsd_loss
    s, pos, neg = _cosine_batch(1)
    ess = [jsd_loss(s, pos, neg, beta=b, convention="logit", temperature=0.2, min_score=-1.0,
                    return_details=True).diagnostics["ess"] for b in (0.0, 0.5, 1.0, 2.0, 5.0)]
    assert ess[0] == pytest.approx(1.0) and all(a > b for a, b in zip(ess, ess[1:])) and ess[-1] < 0.5
    raw = 500.0 + 20.0 * s                          # unbounded scores with a large common offset
    derived = jsd_loss(raw, pos, neg, beta=5.0, convention="derived", return_details=True).diagnostics["ess"]
    assert derived > 0.95


def test_standardised_convention_tilts_whatever_the_score_scale():
    """w = exp(beta (l - mu_i) / sigma_i): the ESS falls strictly with beta, is the same on the
    cosines, on cosines shrunk tenfold and on raw scores with a large offset (scale-free, where
    the 'logit' tilt weakens as the spread shrinks), and beta = tau+ = 0 is plain JSD."""
    from hardneg.losses import jsd_loss
    s, pos, neg = _cosine_batch(4)

    def ess(scores, b, conv="standardised"):
        return jsd_loss(scores, pos, neg, beta=b, convention=conv, temperature=0.5, min_score=-1.0,
                        return_details=True).diagnostics["ess"]

    curve = [ess(s, b) for b in (0.0, 0.5, 1.0, 2.0)]
    assert curve[0] == pytest.approx(1.0) and all(a > b for a, b in zip(curve, curve[1:])) and curve[2] < 0.6
    for scaled in (0.1 * s, 500.0 + 20.0 * s):
        assert ess(scaled, 1.0) == pytest.approx(curve[2], rel=1e-9)
    assert ess(0.1 * s, 1.0, "logit") > ess(s, 1.0, "logit") + 0.05      # logit: shrinking undoes the tilt
    plain = jsd_loss(s, pos, neg, convention="logit", temperature=0.5, min_score=-1.0)
    torch.testing.assert_close(jsd_loss(s, pos, neg, convention="standardised", temperature=0.5, min_score=-1.0),
                               plain, rtol=1e-12, atol=1e-12)


def test_standardised_weights_are_the_softmax_of_standardised_logits():
    """The weights written out: per anchor, softmax over its negatives of beta (l - mu) / sigma,
    with sigma the population sd of its negative logits; E_neg is their weighted softplus."""
    from hardneg.losses import jsd_loss
    s, pos, neg = _cosine_batch(5)
    t, b = 0.5, 1.5
    l = s / t
    ref = []
    for i in range(l.shape[0]):
        ln = l[i][neg[i]]
        w = torch.softmax(b * (ln - ln.mean()) / ln.std(unbiased=False), 0)
        ref.append(F.softplus(-l[i][pos[i]]).mean() + (w * F.softplus(ln)).sum() - 2 * math.log(2))
    got = jsd_loss(s, pos, neg, beta=b, convention="standardised", temperature=t, min_score=-1.0,
                   reduction="none")
    torch.testing.assert_close(got, torch.stack(ref), rtol=1e-12, atol=1e-12)


def test_logit_convention_floor_is_the_smallest_possible_negative_term():
    """Debiasing floors E_neg at softplus(-1 / t) on cosine scores (never below it), and the loss
    has no gradient from the negatives where it binds."""
    from hardneg.losses import jsd_loss
    s, pos, neg = _cosine_batch(2)
    s = s.clone()
    s[pos] = 1.0                                     # perfect positives: tau+ sp(l+) dominates
    s = s.requires_grad_(True)
    t, tau = 0.5, 0.5
    out = jsd_loss(s, pos, neg, tau_plus=tau, convention="logit", temperature=t, min_score=-1.0,
                   reduction="none", return_details=False)
    floor = F.softplus(torch.tensor(-1.0 / t, dtype=torch.float64))
    l = s.detach() / t
    e_neg = ((F.softplus(l) * neg).sum(1) / neg.sum(1) - tau * F.softplus(l[pos])) / (1 - tau)
    expect = F.softplus(-l[pos]) + torch.maximum(e_neg, floor) - 2 * math.log(2)
    torch.testing.assert_close(out.detach(), expect, rtol=1e-12, atol=1e-12)
    assert (e_neg < floor).any()
    out.sum().backward()
    bound = e_neg < floor
    assert torch.all(s.grad[bound][neg[bound]] == 0)


def test_non_finite_scores_give_a_clear_error():
    from hardneg.errors import HardnegError
    from hardneg.losses import jsd_loss
    s, pos, neg = _cosine_batch(3)
    s[0, 1] = float("inf")
    with pytest.raises(HardnegError, match=r"1 score\(s\) are NaN or infinite \(beta=1.0"):
        jsd_loss(s, pos, neg, beta=1.0, convention="logit", temperature=0.5, min_score=-1.0)
