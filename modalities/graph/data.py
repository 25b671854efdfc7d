"""TU Dortmund graph data sets: raw-file checks, downloads, the processed cache, packed tensors
and mini-batches (see :mod:`modalities.graph` for the protocol).

Raw TU files are read from ``<data root>/tudataset/<NAME>/raw/`` (read-only). Where they are
missing and downloads are allowed (``hardneg run --download`` or ``HARDNEG_ALLOW_DOWNLOAD=1``),
:func:`fetch_tu` downloads the data set's zip from the TU Dortmund collection and unpacks its
``<NAME>_*.txt`` files there first. They are checked (:func:`validate_tu_raw`), linked into a
writable cache folder and parsed by torch_geometric's ``TUDataset``, whose ``processed/``
folder therefore lands in the cache. The whole cache entry is built in a temporary folder and
renamed into place, so a crash never leaves a half-written entry behind. The cache key
includes a SHA-256 of the raw files, so changed data are re-processed.

Node features (Sun et al., ICLR 2020; Robinson et al., ICLR 2021): TU node labels, one-hot.
Where a data set has none (IMDB-BINARY/MULTI), the one-hot node degree when the maximum
degree is below 1000, else the degree standardised by its mean and std over the data set.
Option ``node_features='constant'`` uses a constant 1 instead (the original InfoGraph code).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hardneg.atomic import TMP_PREFIX, atomic_dir, write_bytes
from hardneg.data import cache_dir, download, downloads_allowed, fingerprint_files
from hardneg.errors import ConfigError, DataError

KNOWN_DATASETS = ("MUTAG", "PTC_MR", "PROTEINS", "ENZYMES", "NCI1", "IMDB-BINARY", "IMDB-MULTI",
                  "DD", "REDDIT-BINARY", "REDDIT-MULTI-5K", "COLLAB")
CUSTOM_PREFIX = "tu:"           # 'tu:NAME' loads any other TU data set placed under the data root
REQUIRED_FILES = ("A", "graph_indicator", "graph_labels")
OPTIONAL_PER_NODE = ("node_labels", "node_attributes")
OPTIONAL_PER_EDGE = ("edge_labels", "edge_attributes")
TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets/{name}.zip"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
CACHE_FORMAT = 1                # bump when the packed layout changes
STALE_TMP_S = 6 * 3600          # temporary build folders older than this are debris of a killed run


# ---------------------------------------------------------------------------------------
# data: validation, cache, packing
# ---------------------------------------------------------------------------------------
def tu_name(dataset: str) -> str:
    """The TU folder name of a data-set spec ('MUTAG' or 'tu:MY_SET')."""
    name = dataset[len(CUSTOM_PREFIX):] if dataset.startswith(CUSTOM_PREFIX) else dataset
    if not _NAME_RE.match(name):
        raise ConfigError(f"graph data set name {dataset!r} is not a valid TU name; allowed: letters, "
                          "digits, '_', '-', '.'")
    return name


def tu_raw_dir(data_root: Path, name: str) -> Path:
    return Path(data_root) / "tudataset" / name / "raw"


def _expected_files_text(name: str) -> str:
    req = ", ".join(f"{name}_{f}.txt" for f in REQUIRED_FILES)
    opt = ", ".join(f"{name}_{f}.txt" for f in OPTIONAL_PER_NODE)
    return f"expected {req} (optional: {opt})"


def _first_bad_line(path: Path, integer: bool) -> tuple[int, str] | None:
    """(line number, text) of the first non-blank line that is not comma-separated numbers."""
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            for cell in line.split(","):
                try:
                    v = float(cell)
                except ValueError:
                    return lineno, line.rstrip("\n")
                if not np.isfinite(v) or (integer and v != round(v)):
                    return lineno, line.rstrip("\n")
    return None


def _read_table(path: Path, ncols: int | None = None, *, integer: bool = True) -> np.ndarray:
    """Comma-separated numbers, one row per line (integers unless ``integer=False``).

    A file that does not parse raises :class:`DataError` naming the file, the first bad line's
    number and its text.
    """
    import pandas as pd
    kind = "integers" if integer else "numbers"
    try:
        df = pd.read_csv(path, header=None, sep=",", skipinitialspace=True, dtype=np.float64)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; allowed: one comma-separated row of {kind} per line") from None
    except (ValueError, pd.errors.ParserError) as exc:
        bad = _first_bad_line(path, integer)
        where = f"line {bad[0]} is {bad[1]!r}" if bad else f"({exc})"
        raise DataError(f"{path} cannot be parsed as comma-separated {kind}: {where}") from None
    arr = df.to_numpy()
    if ncols is not None and arr.shape[1] != ncols:
        raise DataError(f"{path} has {arr.shape[1]} column(s) per line; allowed: {ncols}")
    if not np.isfinite(arr).all() or (integer and (arr != np.round(arr)).any()):
        bad = _first_bad_line(path, integer)
        where = f": line {bad[0]} is {bad[1]!r}" if bad else ""
        raise DataError(f"{path} holds missing or non-{kind[:-1]} values{where}; allowed: {kind}")
    return arr.astype(np.int64) if integer else arr


def validate_tu_raw(raw_dir: Path, name: str) -> dict[str, int]:
    """Check one TU data set's raw files for consistency; return its sizes.

    Checks: the required files exist; the graph indicator is non-decreasing with ids
    ``1..G`` where ``G`` = number of graph labels, and every graph has at least one node;
    every file parses as comma-separated numbers (labels and the structure as integers), with
    one line per node, edge or graph as its name says; edge endpoints lie in ``1..N`` and
    never join two different graphs. Raises :class:`DataError` naming the file and the
    problem (for a line that does not parse, its number and text).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(f"TU data set {name!r}: folder {raw_dir} does not exist; {_expected_files_text(name)} "
                        f"there (run with --download, or download {TU_URL.format(name=name)} and unzip its "
                        "files into it)")
    missing = _missing_required(raw_dir, name)
    if missing:
        raise DataError(f"TU data set {name!r}: missing raw file(s) {', '.join(missing)} in {raw_dir}; "
                        f"{_expected_files_text(name)} (run with --download to fetch {TU_URL.format(name=name)})")
    ind = _read_table(raw_dir / f"{name}_graph_indicator.txt", 1)[:, 0]
    labels = _read_table(raw_dir / f"{name}_graph_labels.txt", 1)[:, 0]
    n_nodes, n_graphs = len(ind), len(labels)
    f_ind = f"{name}_graph_indicator.txt"
    if (np.diff(ind) < 0).any():
        at = int(np.argmax(np.diff(ind) < 0)) + 2
        raise DataError(f"{f_ind}: graph ids must be non-decreasing (nodes grouped by graph); line {at} "
                        f"goes back from {ind[at - 2]} to {ind[at - 1]}")
    if ind.min() < 1 or ind.max() > n_graphs:
        raise DataError(f"{f_ind} refers to graph ids {ind.min()}..{ind.max()}, but "
                        f"{name}_graph_labels.txt has {n_graphs} line(s); allowed ids: 1..{n_graphs} "
                        "(mismatched indicator and label files)")
    counts = np.bincount(ind - 1, minlength=n_graphs)
    empty = np.flatnonzero(counts == 0) + 1
    if len(empty):
        shown = ", ".join(str(int(g)) for g in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DataError(f"TU data set {name!r}: {len(empty)} graph(s) have no nodes in {f_ind} "
                        f"(graph ids {shown}); every graph needs at least one node")
    for f in OPTIONAL_PER_NODE:
        p = raw_dir / f"{name}_{f}.txt"
        if p.is_file() and (k := len(_read_table(p, integer=f.endswith("labels")))) != n_nodes:
            raise DataError(f"{p.name} has {k} line(s) but {f_ind} lists {n_nodes} node(s); they must match")
    edges = _read_table(raw_dir / f"{name}_A.txt", 2)
    for f in OPTIONAL_PER_EDGE:
        p = raw_dir / f"{name}_{f}.txt"
        if p.is_file() and (k := len(_read_table(p, integer=f.endswith("labels")))) != len(edges):
            raise DataError(f"{p.name} has {k} line(s) but {name}_A.txt lists {len(edges)} edge(s); "
                            "they must match")
    p = raw_dir / f"{name}_graph_attributes.txt"
    if p.is_file() and (k := len(_read_table(p, integer=False))) != n_graphs:
        raise DataError(f"{p.name} has {k} line(s) but {name}_graph_labels.txt lists {n_graphs} graph(s); "
                        "they must match")
    if len(edges):
        if edges.min() < 1 or edges.max() > n_nodes:
            raise DataError(f"{name}_A.txt refers to node ids {edges.min()}..{edges.max()}; allowed: "
                            f"1..{n_nodes} (the number of lines of {f_ind})")
        cross = ind[edges[:, 0] - 1] != ind[edges[:, 1] - 1]
        if cross.any():
            u, v = edges[int(np.argmax(cross))]
            raise DataError(f"{name}_A.txt: edge ({u}, {v}) joins graphs {ind[u - 1]} and {ind[v - 1]}; "
                            f"edges must stay inside one graph (mismatched {f_ind}?)")
    return {"graphs": n_graphs, "nodes": n_nodes, "edges": int(len(edges))}


def fetch_tu(data_root: Path, name: str, *, url: str | None = None, allow: bool | None = None,
             log=print) -> Path:
    """Download TU data set ``name`` and unpack its ``<name>_*.txt`` files into its raw folder.

    The zip (``TU_URL``; the collection publishes no checksums, so the run records the
    SHA-256 of the unpacked files instead) is fetched into the cache through
    :func:`hardneg.data.download`, which refuses when downloads are off and names the URL
    when the machine is offline. The files are written into ``raw/`` (each atomically) only
    when the archive holds every required file, so a broken download never leaves a
    half-filled raw folder. Returns the raw folder.
    """
    import zipfile
    raw = tu_raw_dir(data_root, name)
    url = url or TU_URL.format(name=name)
    zip_path = download(url, cache_dir("downloads", "tudataset") / f"{name}.zip", allow=allow)
    wanted = {f"{name}_{f}.txt" for f in REQUIRED_FILES + OPTIONAL_PER_NODE} | {f"{name}_edge_labels.txt",
                                                                               f"{name}_graph_attributes.txt",
                                                                               f"{name}_edge_attributes.txt"}
    try:
        with zipfile.ZipFile(zip_path) as zf:
            files = {Path(m.filename).name: zf.read(m) for m in zf.infolist()
                     if Path(m.filename).name in wanted and not m.is_dir()}
    except zipfile.BadZipFile:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{url} did not give a zip archive; it was discarded, try again or unzip the "
                        f"data set into {raw} yourself") from None
    missing = [f"{name}_{f}.txt" for f in REQUIRED_FILES if f"{name}_{f}.txt" not in files]
    if missing:
        raise DataError(f"the archive {url} lacks {', '.join(missing)}; {_expected_files_text(name)}")
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for fname, blob in sorted(files.items()):
            write_bytes(raw / fname, blob)
    except OSError as exc:
        raise DataError(f"cannot write TU data set {name!r} under {raw.parent} ({exc.strerror}); the data root "
                        f"must be writable to download into it, or unzip {url} there yourself") from None
    log(f"graph: downloaded {name} from {url} into {raw} ({len(files)} files)")
    return raw


def _missing_required(raw: Path, name: str) -> list[str]:
    return [f"{name}_{f}.txt" for f in REQUIRED_FILES if not (raw / f"{name}_{f}.txt").is_file()]


@dataclass
class PackedGraphs:
    """A whole TU data set as flat tensors (nodes of graph g are ``node_ptr[g]:node_ptr[g+1]``)."""

    x: torch.Tensor           # (N, F) float node features
    edge_index: torch.Tensor  # (2, E) long, global node ids, edges grouped by graph
    node_ptr: torch.Tensor    # (G+1,) long
    edge_ptr: torch.Tensor    # (G+1,) long
    y: torch.Tensor           # (G,) long graph classes 0..K-1
    feature_kind: str = ""

    @property
    def num_graphs(self) -> int:
        return int(self.y.numel())

    def to(self, device: torch.device) -> "PackedGraphs":
        return PackedGraphs(self.x.to(device), self.edge_index.to(device), self.node_ptr.to(device),
                            self.edge_ptr.to(device), self.y.to(device), self.feature_kind)


@dataclass
class GraphBatch:
    """A mini-batch of whole graphs in PyG's flat layout."""

    x: torch.Tensor           # (n, F)
    edge_index: torch.Tensor  # (2, e) batch-local node ids
    batch: torch.Tensor       # (n,) graph index 0..b-1 of each node
    y: torch.Tensor           # (b,)
    num_graphs: int

    def to(self, device: torch.device) -> "GraphBatch":
        return GraphBatch(self.x.to(device), self.edge_index.to(device), self.batch.to(device),
                          self.y.to(device), self.num_graphs)


def gather_graphs(data: PackedGraphs, ids: torch.Tensor) -> GraphBatch:
    """Collate graphs ``ids`` into one :class:`GraphBatch` with tensor ops only (no per-graph loop)."""
    ids = ids.to(data.node_ptr.device)
    n = data.node_ptr[ids + 1] - data.node_ptr[ids]
    e = data.edge_ptr[ids + 1] - data.edge_ptr[ids]
    local_start = torch.cumsum(n, 0) - n
    shift = data.node_ptr[ids] - local_start           # global id - local id, per graph
    edge_start = data.edge_ptr[ids] - (torch.cumsum(e, 0) - e)
    total_n, total_e = int(n.sum()), int(e.sum())
    dev = ids.device
    node_idx = torch.repeat_interleave(shift, n) + torch.arange(total_n, device=dev)
    edge_idx = torch.repeat_interleave(edge_start, e) + torch.arange(total_e, device=dev)
    edge_index = data.edge_index[:, edge_idx] - torch.repeat_interleave(shift, e)
    batch = torch.repeat_interleave(torch.arange(len(ids), device=dev), n)
    return GraphBatch(data.x[node_idx], edge_index, batch, data.y[ids], int(len(ids)))


def _node_features(x: torch.Tensor | None, edge_index: torch.Tensor, num_nodes: int, mode: str
                   ) -> tuple[torch.Tensor, str]:
    """Node labels one-hot if present, else degree features (see module docstring)."""
    if mode == "constant":
        return torch.ones(num_nodes, 1), "constant"
    if x is not None and x.numel() > 0 and x.size(1) > 0:
        return x.float(), f"node-labels-onehot({x.size(1)})"
    deg = torch.bincount(edge_index[0], minlength=num_nodes)
    max_deg = int(deg.max()) if num_nodes else 0
    if max_deg < 1000:
        return F.one_hot(deg, max_deg + 1).float(), f"degree-onehot({max_deg + 1})"
    d = deg.float()
    return ((d - d.mean()) / d.std().clamp_min(1e-12)).unsqueeze(1), "degree-normalised"


def _pack_tudataset(ds: Any) -> dict[str, torch.Tensor]:
    """Flatten a loaded TUDataset into global tensors (one pass over its graphs)."""
    # torch_geometric's TU reader sizes the edge slices with bincount over edges, so graphs
    # without edges at the end of the file fall off; pad those slices (they own no edges)
    n_graphs = int(ds._data.y.numel())
    for key in ("edge_index", "edge_attr"):
        sl = ds.slices.get(key)
        if sl is not None and sl.numel() < n_graphs + 1:
            ds.slices[key] = torch.cat([sl, sl[-1:].repeat(n_graphs + 1 - sl.numel())])
    ds._data_list = None
    xs, eis, n_nodes, n_edges, ys = [], [], [], [], []
    offset = 0
    for i in range(len(ds)):
        g = ds[i]
        n = int(g.num_nodes)
        if g.x is not None:
            xs.append(g.x)
        eis.append(g.edge_index + offset)
        n_nodes.append(n)
        n_edges.append(int(g.edge_index.size(1)))
        ys.append(int(g.y.view(-1)[0]))
        offset += n
    zero = torch.zeros(1, dtype=torch.long)
    out = {
        "edge_index": torch.cat(eis, 1) if eis else torch.zeros(2, 0, dtype=torch.long),
        "node_ptr": torch.cat([zero, torch.cumsum(torch.tensor(n_nodes), 0)]),
        "edge_ptr": torch.cat([zero, torch.cumsum(torch.tensor(n_edges), 0)]),
        "y": torch.tensor(ys, dtype=torch.long),
    }
    if xs:
        out["x_labels"] = torch.cat(xs, 0)
    return out


def tu_raw_files(raw_dir: Path, name: str) -> list[Path]:
    """The raw files of TU data set ``name`` that a run reads (and whose SHA-256 it records)."""
    return sorted(p for p in Path(raw_dir).iterdir() if p.is_file() and p.name.startswith(f"{name}_")
                  and p.suffix == ".txt")


def build_tu_cache(raw_dir: Path, name: str, *, log=print) -> Path:
    """Validate, process and pack one TU data set into the writable cache; return its folder.

    The entry ``cache_dir('tudataset', f'{name}-{fingerprint[:16]}')`` holds ``<name>/raw``
    (links to the read-only raw files), ``<name>/processed`` (PyG's output), ``packed.pt``
    and ``manifest.json``. It is built in a temporary sibling folder and renamed into place
    (atomic on one file system); on any failure the temporary folder is removed.
    """
    raw_dir = Path(raw_dir)
    sizes = validate_tu_raw(raw_dir, name)
    raw_files = tu_raw_files(raw_dir, name)
    digest = fingerprint_files(raw_files, root=raw_dir)
    base = cache_dir("tudataset")
    final = base / f"{name}-{digest[:16]}"
    if _cache_entry_ok(final, digest):
        return final
    if final.exists():
        log(f"graph: discarding an unreadable cache entry {final}")
        shutil.rmtree(final, ignore_errors=True)
    for stale in base.glob(f"{TMP_PREFIX}{final.name}-*"):
        # left by a killed process; a live build of the same entry is far younger than this
        try:
            if time.time() - stale.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    try:
        with atomic_dir(final, existing_ok=lambda e: _cache_entry_ok(e, digest)) as tmp:
            link_dir = tmp / name / "raw"
            link_dir.mkdir(parents=True)
            for p in raw_files:
                try:
                    os.symlink(p.resolve(), link_dir / p.name)
                except OSError:
                    shutil.copy2(p, link_dir / p.name)
            from torch_geometric.datasets import TUDataset
            log(f"graph: processing {name} from {raw_dir} into {final}")
            ds = TUDataset(str(tmp), name, use_node_attr=False)
            packed = _pack_tudataset(ds)
            if packed["y"].numel() != sizes["graphs"] or int(packed["node_ptr"][-1]) != sizes["nodes"]:
                raise DataError(f"TU data set {name!r}: parsed {packed['y'].numel()} graphs / "
                                f"{int(packed['node_ptr'][-1])} nodes, but the raw files list {sizes['graphs']} / "
                                f"{sizes['nodes']}; the raw files are inconsistent")
            torch.save(packed, tmp / "packed.pt")
            manifest = {"format": CACHE_FORMAT, "name": name, "raw_sha256": digest, "raw_dir": str(raw_dir),
                        **sizes}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except OSError as exc:
        raise DataError(f"cannot write the graph cache entry {final} ({exc.strerror or exc}); set "
                        "HARDNEG_CACHE to a writable folder with free space") from None
    return final


def _cache_entry_ok(entry: Path, digest: str) -> bool:
    try:
        m = json.loads((entry / "manifest.json").read_text())
        return (m.get("format") == CACHE_FORMAT and m.get("raw_sha256") == digest
                and (entry / "packed.pt").is_file())
    except (OSError, ValueError):
        return False


def load_tu(data_root: Path, dataset: str, *, node_features: str = "auto", log=print
            ) -> tuple[PackedGraphs, str]:
    """Load TU data set ``dataset`` from ``data_root`` as :class:`PackedGraphs` plus its raw SHA-256."""
    name = tu_name(dataset)
    raw = tu_raw_dir(data_root, name)
    if _missing_required(raw, name) and downloads_allowed():
        fetch_tu(data_root, name, log=log)
    entry = build_tu_cache(raw, name, log=log)
    try:
        packed = torch.load(entry / "packed.pt", weights_only=True)
        digest = json.loads((entry / "manifest.json").read_text())["raw_sha256"]
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        shutil.rmtree(entry, ignore_errors=True)
        raise DataError(f"the graph cache entry {entry} could not be read ({exc}); it was removed, "
                        "run again to rebuild it") from None
    num_nodes = int(packed["node_ptr"][-1])
    x, kind = _node_features(packed.get("x_labels"), packed["edge_index"], num_nodes, node_features)
    return PackedGraphs(x, packed["edge_index"], packed["node_ptr"], packed["edge_ptr"], packed["y"], kind), digest
