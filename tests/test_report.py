"""The report: statistics against hand computation, byte-identical regeneration, clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import toy_adapter
from scipy import stats

from hardneg import config, report, results, runner
from hardneg.report import companion
from hardneg.results import ResultsError


def rec(run_id: str, beta: float, tau: float, seed: int, value: float, *, epochs: int = 3, dataset: str = "MUTAG",
        status: str = "ok", convention: str = "derived") -> dict:
    method = "random-init" if epochs == 0 else ("jsd" if beta == 0 and tau == 0 else "hard-jsd")
    return {
        "schema_version": results.SCHEMA_VERSION, "suite": "hand", "run_id": run_id, "status": status,
        "method": method,
        "spec": {"modality": "graph", "dataset": dataset, "seed": seed, "suite": "hand",
                 "loss": {"objective": "jsd", "beta": beta, "tau_plus": tau, "temperature": 1.0, "floor": True,
                          "hardness": "logit", "multi_positive": "softmax", "jsd_convention": convention},
                 "train": {"epochs": epochs, "batch_size": 32, "lr": 0.001}, "options": {"hidden": 32}},
        "metrics": [] if status != "ok" else [{"metric": "svc_acc", "value": value, "split": "cv",
                                               "protocol": "RBF SVC, outer 10-fold", "selection": "last-epoch",
                                               "std": None}],
        "curves": [{"epoch": e, "loss": 1.0 / (e + 1 + beta), "diag_ess": 0.5} for e in range(epochs)],
        "error": None if status == "ok" else {"type": "TrainingDiverged", "message": "loss became nan",
                                              "traceback": ""},
        "finished_at": "2025-01-01T00:00:00Z", "device": "cpu", "git_commit": "c0ffee", "git_dirty": False, "versions": {"hardneg": "0.1.0", "torch": "2"},
        "wall_time_s": 1.0,
    }


BASE = {0: 80.0, 1: 82.0, 2: 84.0}
HARD = {0: 83.0, 1: 83.5, 2: 88.0}


def hand_records(folder: Path) -> None:
    i = 0
    for seed in range(3):
        for beta, tau, vals in ((0.0, 0.0, BASE), (1.0, 0.1, HARD)):
            results.write_record(folder, rec(f"{i:012x}", beta, tau, seed, vals[seed]))
            i += 1
        results.write_record(folder, rec(f"f{i:011x}", 0.0, 0.0, seed, 70.0 + seed, epochs=0))
        i += 1
    # a variant with only two seeds and one failed run
    results.write_record(folder, rec("aaaaaaaaaaaa", 2.0, 0.0, 0, 81.0))
    results.write_record(folder, rec("aaaaaaaaaaab", 2.0, 0.0, 1, 85.0))
    results.write_record(folder, rec("aaaaaaaaaaac", 2.0, 0.0, 2, 0.0, status="failed"))


def test_tables_match_hand_computation(tmp_path):
    hand_records(tmp_path / "res")
    df = report.load_frame(tmp_path / "res")
    summ = report.summary_table(df)
    row = summ[(summ["beta"] == 1.0) & (summ["tau_plus"] == 0.1)].iloc[0]
    assert row["n"] == 3 and math.isclose(row["mean"], sum(HARD.values()) / 3)
    assert math.isclose(row["std"], stats.tstd(list(HARD.values())))
    floor = summ[summ["method"] == "random-init"].iloc[0]
    assert floor["n"] == 3 and math.isclose(floor["mean"], 71.0)
    assert summ.iloc[0]["method"] == "random-init"  # the floor is listed first
    gains = report.gains_table(df)
    g = gains[gains["beta"] == 1.0].iloc[0]
    d = [HARD[s] - BASE[s] for s in range(3)]
    assert g["test"] == "paired" and g["n"] == 3
    assert math.isclose(g["gain"], sum(d) / 3) and math.isclose(g["gain_sd"], stats.tstd(d))
    assert math.isclose(g["p_value"], stats.ttest_rel(list(HARD.values()), list(BASE.values())).pvalue)
    g2 = gains[gains["beta"] == 2.0].iloc[0]  # paired on the two seeds both have
    assert g2["n"] == 2 and math.isclose(g2["gain"], ((81 - 80) + (85 - 82)) / 2)
    assert len(gains) == 2  # no gain row for the baseline or the random-init floor


def test_other_settings_get_their_own_baseline(tmp_path):
    folder = tmp_path / "res"
    for seed in range(2):
        results.write_record(folder, rec(f"b{seed}", 0.0, 0.0, seed, 80.0 + seed))
        results.write_record(folder, rec(f"h{seed}", 1.0, 0.0, seed, 90.0 + seed))
        results.write_record(folder, rec(f"B{seed}", 0.0, 0.0, seed, 60.0, convention="authors"))
        results.write_record(folder, rec(f"H{seed}", 1.0, 0.0, seed, 61.0, convention="authors"))
    gains = report.gains_table(report.load_frame(folder))
    by_setting = dict(zip(gains["setting"], gains["gain"]))
    assert by_setting == {"jsd_convention=authors": 1.0, "jsd_convention=derived": 10.0}


def test_a_loss_setting_the_objective_ignores_is_not_in_its_setting_string(tmp_path):
    # InfoNCE never reads jsd_convention (JSD never reads hardness): its rows must not be labelled
    # by it, and its gain is still taken against its own baseline
    folder = tmp_path / "res"
    for seed in range(2):
        for tag, beta, conv, value in (("b", 0.0, "derived", 80.0), ("a", 1.0, "authors", 82.0),
                                       ("n", 0.0, "derived", 70.0), ("h", 1.0, "derived", 75.0)):
            r = rec(f"{tag}{seed}", beta, 0.0, seed, value + seed, convention=conv)
            if tag in "nh":
                r["spec"]["loss"].update(objective="infonce", hardness="cosine" if tag == "h" else "logit")
            results.write_record(folder, r)
    df = report.load_frame(folder)
    by_objective = {o: sorted(set(df[df["objective"] == o]["setting"])) for o in ("jsd", "infonce")}
    assert by_objective == {"jsd": ["objective=jsd, jsd_convention=authors", "objective=jsd, jsd_convention=derived"],
                            "infonce": ["objective=infonce, hardness=cosine", "objective=infonce, hardness=logit"]}
    gains = report.gains_table(df)
    assert dict(zip(gains["setting"], gains["gain"])) == {"objective=jsd, jsd_convention=authors": 2.0,
                                                          "objective=infonce, hardness=cosine": 5.0}


def test_across_data_sets_the_mean_gain_is_tested_from_each_data_sets_own_test(tmp_path):
    folder = tmp_path / "res"
    base = {"MUTAG": [80.0, 82.0, 81.0], "PTC_MR": [55.0, 58.0, 56.0], "PROTEINS": [73.0, 74.0, 74.5]}
    hard = {"MUTAG": [83.0, 83.5, 84.5], "PTC_MR": [55.5, 57.0, 58.0], "PROTEINS": [73.5, 74.5, 74.0]}
    prior = {"MUTAG": 0.55, "PTC_MR": 0.51, "PROTEINS": 0.52}     # a tau+ chosen per data set
    for ds in base:
        for s in range(3):
            results.write_record(folder, rec(f"b{ds}{s}", 0.0, 0.0, s, base[ds][s], dataset=ds))
            results.write_record(folder, rec(f"h{ds}{s}", 1.0, 0.1, s, hard[ds][s], dataset=ds))
            results.write_record(folder, rec(f"p{ds}{s}", 0.0, prior[ds], s, base[ds][s] + 1 + s, dataset=ds))
    results.write_record(folder, rec("only-mutag", 2.0, 0.0, 0, 90.0))             # one data set: no mean
    for s in range(3):                                                             # a data set with no test
        results.write_record(folder, rec(f"bE{s}", 0.0, 0.0, s, 50.0 + s, dataset="ENZYMES"))
    results.write_record(folder, rec("hE0", 1.0, 0.1, 0, 60.0, dataset="ENZYMES"))
    df = report.load_frame(folder)
    tables = report.write_tables(df, tmp_path / "rep")
    t = tables["overall"]
    assert len(t) == 2 and set(t["method"]) == {"hard-jsd"}   # method of rec(): tau+ > 0 is 'hard-jsd' too
    h = t[t["beta"] == 1.0].iloc[0]
    parts = [stats.ttest_rel(hard[ds], base[ds]) for ds in ("MUTAG", "PROTEINS", "PTC_MR")]
    d = [sum(hard[ds]) / 3 - sum(base[ds]) / 3 for ds in ("MUTAG", "PROTEINS", "PTC_MR")]
    se_k = [x / r.statistic for x, r in zip(d, parts)]
    se = math.sqrt(sum(x * x for x in se_k)) / 3
    dof = sum(x * x for x in se_k) ** 2 / sum(x ** 4 / 2 for x in se_k)
    assert h["k"] == 3 and h["datasets"] == "MUTAG, PROTEINS, PTC_MR" and h["positive"] == 3
    assert math.isclose(h["gain"], sum(d) / 3)
    assert math.isclose(h["p_value"], 2 * stats.t.sf(abs(sum(d) / 3 / se), dof))
    assert math.isclose(h["ci_high"] - h["gain"], stats.t.ppf(0.975, dof) * se)
    assert math.isclose(h["sample_ci_high"] - h["gain"], stats.t.ppf(0.975, 2) * stats.tstd(d) / math.sqrt(3))
    assert "left out (no test): ENZYMES" in h["note"]
    p = t[t["beta"] == 0.0].iloc[0]
    assert p["tau_plus"] == "per data set (MUTAG 0.55, PROTEINS 0.52, PTC_MR 0.51)" and p["k"] == 3
    assert math.isclose(p["gain"], 2.0)                # each data set: +1, +2, +3 over its baseline
    assert list(p["p_adj"] for _, p in t.iterrows()) == report.stats.holm(list(t["p_value"]))
    page = report.render_page("hand", folder, df, tables, [], results.load_records(folder))
    assert "### graph: across data sets" in page and page.index("across data sets") < page.index("### graph / ENZYMES")
    assert (tmp_path / "rep" / "tables" / "overall.csv").is_file()


def test_a_setting_without_its_own_baseline_shares_the_inert_one(tmp_path):
    # the authors' convention is plain JSD at beta = 0, tau+ = 0, so that cell runs once, as 'derived'
    folder = tmp_path / "res"
    for seed in range(2):
        results.write_record(folder, rec(f"b{seed}", 0.0, 0.0, seed, 80.0 + seed))
        results.write_record(folder, rec(f"h{seed}", 1.0, 0.5, seed, 90.0 + seed))
        results.write_record(folder, rec(f"A{seed}", 1.0, 0.5, seed, 83.0 + 2 * seed, convention="authors"))
        r = rec(f"L{seed}", 1.0, 0.5, seed, 70.0, convention="authors")          # another setting that matters:
        r["spec"]["train"]["lr"] = 0.01                                          # no baseline of its own, none shared
        results.write_record(folder, r)
    gains = report.gains_table(report.load_frame(folder))
    rows = {s: (g, n) for s, g, n in zip(gains["setting"], gains["gain"], gains["n"]) if s.endswith("0.001")}
    assert rows == {"jsd_convention=derived, lr=0.001": (10.0, 2), "jsd_convention=authors, lr=0.001": (3.5, 2)}
    orphan = gains[gains["setting"] == "jsd_convention=authors, lr=0.01"].iloc[0]   # shown, with why no verdict
    assert math.isnan(orphan["gain"]) and orphan["test"] == "" and "no baseline" in orphan["note"]


def test_report_regenerates_byte_for_byte(tmp_path):
    hand_records(tmp_path / "res")
    out = tmp_path / "rep"
    page = report.write_report(tmp_path / "res", out)
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert page == out / "report.md"
    names = {str(p) for p in first}
    for expected in ("tables/summary.md", "tables/summary.csv", "tables/summary.tex", "tables/gains.md",
                     "tables/gains.csv", "tables/gains.tex", "tables/overall.md", "tables/overall.csv",
                     "tables/runs.csv"):
        assert expected in names
    kinds = {n.split("/")[1].split("_")[0] for n in names if n.startswith("figures/")}
    assert kinds == {"beta", "heatmap", "curves", "diagnostics"}
    text = page.read_text()
    assert "RBF SVC, outer 10-fold" in text and "last-epoch" in text  # the protocol of the numbers
    assert "Failed runs" in text and "loss became nan" in text
    for p in out.rglob("*.png"):
        assert b"Software" not in p.read_bytes()
    report.write_report(tmp_path / "res", out)
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert second == first


def test_report_of_a_real_toy_suite_is_deterministic(tmp_path):
    s = config.load_suite(toy_adapter.write_suite(tmp_path), overrides=["grid.seed=[0]"])
    runner.run_suite(s, results_dir=tmp_path / "res", progress=False, log=lambda m: None)
    a = report.write_report(tmp_path / "res", tmp_path / "a")
    report.write_report(tmp_path / "res", tmp_path / "b")
    fa = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    fb = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert fa == fb and a.read_text().count("![") == 5 and len(fa) == 5 + 11 + 2  # + report.md, .inputs.sha256


def test_empty_results_is_a_clear_error(tmp_path):
    (tmp_path / "res").mkdir()
    with pytest.raises(ResultsError, match="no run records"):
        report.write_report(tmp_path / "res", tmp_path / "rep")


def test_constant_paired_difference_has_no_p_value(tmp_path):
    """Two seeds whose differences agree up to rounding: the t-test is undefined, not p ~ 1e-15."""
    folder = tmp_path / "res"
    base, var = {0: 85.37, 1: 87.1}, {0: 85.37 + 0.53, 1: 87.1 + 0.53}
    for seed in (0, 1):
        results.write_record(folder, rec(f"b{seed:011x}", 0.0, 0.0, seed, base[seed]))
        results.write_record(folder, rec(f"v{seed:011x}", 0.5, 0.1, seed, var[seed]))
    g = report.gains_table(report.load_frame(folder)).iloc[0]
    assert g["n"] == 2 and math.isclose(g["gain"], 0.53, rel_tol=1e-9)
    assert math.isnan(g["p_value"]) and g["test"] == "" and "sd 0" in g["note"]


def test_wide_table_has_one_row_per_method_and_a_column_per_metric(tmp_path):
    folder = tmp_path / "res"
    for i, (beta, tau, epochs) in enumerate(((0.0, 0.0, 3), (1.0, 0.1, 3), (0.0, 0.0, 0))):
        for seed in range(2):
            r = rec(f"{i:06x}{seed:06x}", beta, tau, seed, 80.0 + i + seed, epochs=epochs)
            # three metrics per run, in the adapter's order (not alphabetical)
            r["metrics"] = [dict(r["metrics"][0], metric=m, value=v + i + seed)
                            for m, v in (("zeta", 1.0), ("alpha", 2.0), ("mid", 3.0))]
            results.write_record(folder, r)
    page = report.write_report(folder, tmp_path / "rep").read_text()
    block = page.split("### At a glance")[1].split("###")[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    assert lines[0] == "| dataset | method | β | τ+ | n | zeta | alpha | mid |"
    body = lines[2:]
    assert len(body) == 3 and body[0].startswith("| MUTAG | random-init |  |  | 2 |")
    # mean ± sample std over the two seeds: values i + seed + 1 for zeta, i = 1 is the hard run
    hard = next(ln for ln in body if "hard-jsd" in ln)
    assert "| 1 | 0.1 | 2 | 2.50 ± 0.71 |" in hard


def test_eval_every_runs_are_their_own_setting_with_evaluation_curves(tmp_path):
    folder = tmp_path / "res"
    for seed in range(2):
        results.write_record(folder, rec(f"p{seed}", 0.0, 0.0, seed, 80.0 + seed))    # an older record: no eval_every
        r = rec(f"e{seed}", 0.0, 0.0, seed, 80.0 + seed)
        r["spec"]["train"]["eval_every"] = 1
        r["curves"][0]["eval_svc_acc"] = 85.0 + seed
        r["curves"][0]["eval_svc_acc_std"] = 3.0
        r["metrics"].append({"metric": "svc_acc_best", "value": 85.0 + seed, "split": "cv", "std": 3.0,
                             "protocol": "RBF SVC; best of 3 evaluations", "selection": "selected-on-test"})
        results.write_record(folder, r)
    df = report.load_frame(folder)
    summ = report.summary_table(df)
    last = summ[summ["metric"] == "svc_acc"]
    assert sorted(last["setting"]) == ["eval_every=0", "eval_every=1"] and list(last["n"]) == [2, 2]
    assert list(summ[summ["metric"] == "svc_acc_best"]["setting"]) == ["eval_every=1"]
    page = report.write_report(folder, tmp_path / "out")
    figs = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir() if p.name.startswith("evaluation_"))
    assert len(figs) == 1                     # only the eval_every setting has evaluation curves
    text = page.read_text()
    assert "selected-on-test" in text and "downstream metric evaluated during training" in text


def test_best_epoch_numbers_are_set_beside_the_last_epoch_per_cell(tmp_path):
    folder = tmp_path / "res"
    for seed, (ev, last) in enumerate(((84.0, 80.0), (86.0, 83.0), (81.0, 81.0))):
        for beta, shift in ((0.0, 0.0), (1.0, 1.0)):
            r = rec(f"b{int(beta)}{seed}", beta, 0.1 * beta, seed, last + shift)
            r["spec"]["train"]["eval_every"] = 1
            # epochs 0, 1 evaluated mid-training; the last (2) is the metric; ties go to the earliest
            r["curves"][0]["eval_svc_acc"] = ev + shift
            r["curves"][1]["eval_svc_acc"] = ev + shift - 5.0
            r["metrics"].append({"metric": "svc_acc_best", "value": max(ev, last) + shift, "split": "cv",
                                 "std": 1.0, "protocol": "best of 3", "selection": "selected-on-test"})
            results.write_record(folder, r)
    text = report.write_report(folder, tmp_path / "out").read_text()
    block = text.split("### Numbers selected on the test data")[1]
    assert "over 6 run(s) it is above the last-epoch `svc_acc` by 0.00 to 4.00 (median 3.00) points" in block
    assert "the chosen epoch is 1 of 3 (earliest 1)" in block
    rows = [ln for ln in block.splitlines() if ln.startswith("| graph / MUTAG")]
    # per cell: mean last (80+83+81)/3 = 81.33, mean best (84+86+81)/3 = 83.67, differences 4, 3, 0
    assert rows == ["| graph / MUTAG | `svc_acc_best` | jsd | 0 | 0 | 3 | 81.33 | 83.67 | 0.00 to 4.00 (median 3.00) | 1 |",
                    "| graph / MUTAG | `svc_acc_best` | hard-jsd | 1 | 0.1 | 3 | 82.33 | 84.67 | 0.00 to 4.00 "
                    "(median 3.00) | 1 |"]


def _best_epoch_records(folder: Path, suite: str = "companion") -> None:
    for seed, (ev, last) in enumerate(((84.0, 80.0), (86.0, 83.0), (81.0, 81.0))):
        r = rec(f"c0{seed}", 0.0, 0.0, seed, last)
        r["suite"] = r["spec"]["suite"] = suite
        r["spec"]["train"]["eval_every"] = 1
        r["curves"][0]["eval_svc_acc"] = ev
        r["metrics"].append({"metric": "svc_acc_best", "value": max(ev, last), "split": "cv", "std": 1.0,
                             "protocol": "best of 3", "selection": "selected-on-test"})
        results.write_record(folder, r)


def test_a_companion_suites_best_epoch_numbers_sit_beside_the_verdict_and_stay_with_the_report(tmp_path):
    hand_records(tmp_path / "res")
    _best_epoch_records(tmp_path / "comp")
    out = tmp_path / "rep"
    alone = report.write_report(tmp_path / "res", tmp_path / "alone").read_text()
    text = report.write_report(tmp_path / "res", out, companions=[tmp_path / "comp"]).read_text()
    assert "Companion" not in alone and "--companion" not in alone
    block = text.split("## Companion `companion`: numbers selected on the test data")[1].split("## Provenance")[0]
    assert "the 3 record(s) in" in block and "(seeds 0, 1, 2; commit c0ffee (clean); cpu)" in block
    assert "over 3 run(s) it is above the last-epoch `svc_acc` by 0.00 to 4.00 (median 3.00) points" in block
    # the verdict and the tables are the report's own records only
    assert text.split("## Verdict")[1].split("## Companion")[0] == alone.split("## Verdict")[1].split("## Provenance")[0]
    assert f"--companion {companion.shown(tmp_path / 'comp')}`" in text.splitlines()[2]
    assert (out / "tables" / "gains.csv").read_bytes() == (tmp_path / "alone" / "tables" / "gains.csv").read_bytes()
    # regenerating without naming companions keeps them; a new companion record changes the page
    fp = (out / ".inputs.sha256").read_text()
    assert report.write_report(tmp_path / "res", out).read_text() == text
    r = rec("c03", 0.0, 0.0, 3, 82.0)
    r["metrics"].append({"metric": "svc_acc_best", "value": 82.0, "split": "cv", "std": 1.0,
                         "protocol": "best of 3", "selection": "selected-on-test"})
    results.write_record(tmp_path / "comp", r)
    report.write_report(tmp_path / "res", out, if_changed=True)
    assert (out / ".inputs.sha256").read_text() != fp and "the 4 record(s) in" in (out / "report.md").read_text()
    # an empty list drops them
    assert report.write_report(tmp_path / "res", out, companions=[]).read_text() == alone
    assert not (out / ".companions").exists()


def test_a_companion_without_best_epoch_numbers_or_records_is_refused_by_name(tmp_path):
    hand_records(tmp_path / "res")
    hand_records(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    for folder, what in (("other", "holds no best-epoch metric"), ("empty", "holds no run records"),
                         ("missing", "does not exist"), ("res", "is the report's own results folder")):
        with pytest.raises(ResultsError, match=f"companion folder .*{folder} {what}"):
            report.write_report(tmp_path / "res", tmp_path / "rep", companions=[tmp_path / folder])
    assert not (tmp_path / "rep").exists()


def test_by_dataset_table_lines_up_methods_across_data_sets(tmp_path):
    folder = tmp_path / "res"
    for seed in range(3):
        for ds, base in (("MUTAG", 80.0), ("PTC_MR", 60.0)):
            results.write_record(folder, rec(f"{ds}b{seed}", 0.0, 0.0, seed, base + seed, dataset=ds))
            results.write_record(folder, rec(f"{ds}f{seed}", 0.0, 0.0, seed, base - 10, dataset=ds, epochs=0))
            if ds == "MUTAG" or seed < 2:                     # PTC_MR's hard cell has two seeds
                results.write_record(folder, rec(f"{ds}h{seed}", 1.0, 0.5, seed, base + 2 * seed, dataset=ds))
    df = report.load_frame(folder)
    header, rows = report.dataset_table(df, "graph", "svc_acc", "cv")
    assert header == ["method", "β", "τ+", "MUTAG", "PTC_MR"]
    assert rows[0] == ["random-init", "", "", "70.00 ± 0.00", "50.00 ± 0.00"]
    assert rows[1] == ["jsd", "0", "0", "81.00 ± 1.00", "61.00 ± 1.00"]
    assert rows[2] == ["hard-jsd", "1", "0.5", "82.00 ± 2.00", f"61.00 ± {math.sqrt(2):.2f} (n=2)"]
    assert "### By data set: `svc_acc` (cv)" in report.write_report(folder, tmp_path / "out").read_text()


def test_verdict_is_first_and_pairs_only_on_one_kind_and_clean_commit(tmp_path):
    hand_records(tmp_path / "res")
    page = report.write_report(tmp_path / "res", tmp_path / "rep").read_text()
    assert page.index("## Verdict") < page.index("## Provenance") < page.index("\n## graph")
    verdict = page.split("## Verdict")[1].split("## Provenance")[0]
    d = [HARD[s] - BASE[s] for s in range(3)]
    p = stats.ttest_rel(list(HARD.values()), list(BASE.values())).pvalue
    row = next(ln for ln in verdict.splitlines() if ln.startswith("| hard-jsd | 1 | 0.1 |"))
    lo, hi = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.tstd(d) / math.sqrt(3))
    assert f"{sum(d) / 3:.2f} [{lo:.2f}, {hi:.2f}]" in row and "| paired t | 3 |" in row
    # Holm over the two tested comparisons of the report (beta 1 and beta 2)
    p2 = stats.ttest_rel([81.0, 85.0], [80.0, 82.0]).pvalue
    assert f"| {p:.3g} | {min(1.0, 2 * min(p, p2)) if p < p2 else max(2 * p2, p):.3g} |" in row
    assert "Holm (family-wise error) across all 2 tested comparisons" in verdict
    assert "random-init 71.00 ± 1.00 (n=3" in verdict                              # the floor is a reference
    assert "| InfoGraph (published) | 89.01 ± 1.13 |" in verdict                   # published numbers beside
    # the same records, one baseline seed on another processor kind: no longer pairs, Welch
    (tmp_path / "res" / "000000000000.json").write_text(
        (tmp_path / "res" / "000000000000.json").read_text().replace('"device": "cpu"', '"device": "gpu"'))
    g = report.gains_table(report.load_frame(tmp_path / "res"))
    g1 = g[g["beta"] == 1.0].iloc[0]
    assert g1["test"] == "welch" and "processor kind differs in 1/3 pairs" in g1["note"]
    assert math.isclose(g1["p_value"], stats.ttest_ind(list(HARD.values()), list(BASE.values()),
                                                       equal_var=False).pvalue)


def test_pairs_over_the_seeds_that_pair_when_enough_do():
    """One seed of five on another processor kind: paired over the other four, the note names
    the seed left out; with three of five (or fewer than MIN_PAIRS) unpaired, Welch over all."""
    from hardneg.report import compare as cmp
    v = {s: 80.0 + s + 0.3 * (s % 2) for s in range(5)}
    b = {s: 79.0 + s for s in range(5)}
    meta = {s: ("cpu", "abc", False) for s in range(5)}
    moved = {**meta, 0: ("gpu", "abc", False)}
    c, note = cmp.compare(v, meta, b, moved)
    d = [v[s] - b[s] for s in range(1, 5)]
    assert c.test == "paired" and c.n == 4 and math.isclose(c.gain, sum(d) / 4)
    assert math.isclose(c.p, stats.ttest_rel([v[s] for s in range(1, 5)], [b[s] for s in range(1, 5)]).pvalue)
    assert "paired over 4/5 seeds, seed(s) 0 left out (processor kind differs in 1/5 pairs)" in note
    worse = {**moved, 1: ("cpu", "def", False), 2: ("cpu", "abc", True)}
    c, note = cmp.compare(v, meta, b, worse)
    assert c.test == "welch" and note.startswith("unpaired: processor kind differs in 1/5 pairs; "
                                                 "commit differs in 1/5 pairs; dirty or unknown tree in 1/5 pairs")


def test_bh_option_and_cells_without_a_verdict_say_why(tmp_path):
    folder = tmp_path / "res"
    for seed in range(2):
        results.write_record(folder, rec(f"b{seed}", 0.0, 0.0, seed, 80.0 + seed))
        results.write_record(folder, rec(f"c{seed}", 0.5, 0.0, seed, 80.5 + seed))            # constant gain
        results.write_record(folder, rec(f"n{seed}", 2.0, 0.0, seed, math.nan))              # NaN metric
    results.write_record(folder, rec("one", 1.0, 0.0, 0, 90.0))                              # n = 1
    r = rec("other", 3.0, 0.0, 0, 70.0)
    r["suite"] = "elsewhere"
    results.write_record(folder, r)
    page = report.write_report(folder, tmp_path / "rep", adjust="bh").read_text()
    verdict = page.split("## Verdict")[1].split("## Provenance")[0]
    assert "records of 2 suites (elsewhere, hand)" in verdict
    assert "Benjamini-Hochberg" in verdict and "0 comparisons tested" not in verdict
    assert "sd 0" in verdict and "n = 1" in verdict and "NaN" in verdict
    assert "No verdict for 4 variant(s)" in verdict
    with pytest.raises(ResultsError, match="'none' is not one of holm, bh"):
        report.write_report(folder, tmp_path / "rep2", adjust="none")


def test_floor_is_drawn_and_subtracted_whatever_its_setting_string(tmp_path):
    folder = tmp_path / "res"
    for seed in range(3):
        for lr in (0.001, 0.01):                     # lr varies among trained runs: their setting string says so
            for i, (beta, tau) in enumerate(((0.0, 0.0), (1.0, 0.5))):
                r = rec(f"{lr}{i}{seed}", beta, tau, seed, 80.0 + 5 * i + seed + lr * 100)
                r["spec"]["train"]["lr"] = lr
                r["diagnostics"] = {"ess": 0.25 * (i + 1), "floor_rate": 0.75 * i, "true_class_prior": 0.5,
                                    "fn_weight_share": 0.5}
                results.write_record(folder, r)
        results.write_record(folder, rec(f"f{seed}", 0.0, 0.0, seed, 70.0 + 2 * seed, epochs=0))
    df = report.load_frame(folder)
    summ = report.summary_table(df)
    assert set(df[~df["trained"]]["setting"]) == {""} and "lr=0.01" in set(df["setting"])
    refs = report.figures._references(summ, {("graph", "MUTAG", "svc_acc", "cv"): (60.0, "majority")},
                                      "graph", "MUTAG", "lr=0.01")
    assert refs == [("svc_acc", "cv", "random-init (untrained)", 72.0), ("svc_acc", "cv", "trivial baseline", 60.0)]
    fl = report.floors_table(df)
    row = fl[(fl["setting"] == "lr=0.01") & (fl["beta"] == 1.0)].iloc[0]
    assert row["test"] == "paired" and math.isclose(row["gain"], 87.0 - 72.0, rel_tol=1e-9)  # 86 + seed - (70 + 2 seed)
    hard = report.tables.hardness_table(df, "graph")
    assert ["MUTAG", "lr=0.01", "hard-jsd", "1", "0.5", "3", "0.50", "0.75", "0.50", "0.50"] in hard
    page = report.write_report(folder, tmp_path / "rep").read_text()
    assert "The floor binds for most anchors (final floor rate > 0.5) in 2 cell(s)" in page
    assert "### Achieved hardness" in page and (tmp_path / "rep" / "figures" / "ess_graph-MUTAG.png").is_file()


def test_one_floor_serves_every_value_of_a_training_only_option(tmp_path):
    """Graph's ``scores`` matters only to training: the untrained runs' setting leaves it out, so
    the raw and the cosine cells both subtract the one floor, paired and without a note."""
    folder = tmp_path / "res"
    for seed in range(3):
        for scores, off in (("raw", 0.0), ("cosine", 2.0)):
            for i, (beta, tau) in enumerate(((0.0, 0.0), (1.0, 0.1))):
                r = rec(f"{scores}{i}{seed}", beta, tau, seed, 80.0 + off + i + 1.3 * seed)
                r["spec"]["options"]["scores"] = scores
                results.write_record(folder, r)
        f = rec(f"f{seed}", 0.0, 0.0, seed, 70.0 + seed, epochs=0)
        f["spec"]["options"]["scores"] = "raw"                  # what an untrained run resolves to
        results.write_record(folder, f)
    df = report.load_frame(folder)
    assert set(df[~df["trained"]]["setting"]) == {""} and {"scores=raw", "scores=cosine"} <= set(df["setting"])
    fl = report.floors_table(df)
    row = fl[(fl["setting"] == "scores=cosine") & (fl["beta"] == 1.0)].iloc[0]
    assert row["test"] == "paired" and row["note"] == "" and math.isclose(row["gain"], 83.3 - 70.0, rel_tol=1e-9)


def test_two_floors_that_differ_only_in_an_option_are_not_pooled(tmp_path):
    """A second untrained encoder (other ``hidden``) beside the floor of the trained runs'
    encoder: the trained rows name their ``hidden``, each floor keeps its own, and the gain over
    the floor is over the matching one, not over the mean of the two."""
    folder = tmp_path / "res"
    for seed in range(3):
        results.write_record(folder, rec(f"b{seed}", 0.0, 0.0, seed, 80.0 + 1.3 * seed))
        results.write_record(folder, rec(f"f{seed}", 0.0, 0.0, seed, 70.0 + seed, epochs=0))
        other = rec(f"g{seed}", 0.0, 0.0, seed, 60.0, epochs=0)
        other["spec"]["options"]["hidden"] = 8
        results.write_record(folder, other)
    df = report.load_frame(folder)
    assert set(df[~df["trained"]]["setting"]) == {"hidden=32", "hidden=8"} and set(df[df["trained"]]["setting"]) == {"hidden=32"}
    row = report.floors_table(df).iloc[0]
    assert row["test"] == "paired" and math.isclose(row["gain"], 10.3, rel_tol=1e-9)
    page = report.write_report(folder, tmp_path / "rep").read_text()
    assert "random-init [hidden=32] 71.00 ± 1.00 (n=3, `svc_acc`); random-init [hidden=8] 60.00 ± 0.00 (n=3" in page


def test_learning_curves_put_every_cell_on_samples_seen(tmp_path):
    """Each trained cell's evaluation curve, mean over seeds, against cumulative training samples,
    ending at the record's last-epoch metric; untrained runs have no curve; one cell draws nothing."""
    folder = tmp_path / "res"
    for seed in range(2):
        for beta, tau, rid in ((0.0, 0.0, "a"), (1.0, 0.1, "b")):
            r = rec(f"{rid}{seed}", beta, tau, seed, 90.0 + seed + beta)
            r["spec"]["train"]["eval_every"] = 2
            for e in r["curves"]:
                e["samples"] = 100
            r["curves"][1]["eval_svc_acc"] = 80.0 + seed + 2 * beta
            results.write_record(folder, r)
        results.write_record(folder, rec(f"f{seed}", 0.0, 0.0, seed, 70.0, epochs=0))
    df = report.load_frame(folder)
    records = results.load_records(folder)
    series = report.figures.learning_series(records, dict(zip(df["run_id"], df["setting"])), "graph", "MUTAG",
                                            "svc_acc")
    assert series == {"β=0, τ+=0": [(200, 80.5, 2), (300, 90.5, 2)],
                      "β=1, τ+=0.1": [(200, 82.5, 2), (300, 91.5, 2)]}
    report.write_report(folder, tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "learning_graph-MUTAG.png").is_file()
    assert "against training samples seen, every cell on one axis" in (tmp_path / "out" / "report.md").read_text()
    one = tmp_path / "one"
    for r in records:
        if r["run_id"].startswith("a"):
            results.write_record(one, r)
    report.write_report(one, tmp_path / "out1")
    assert not (tmp_path / "out1" / "figures" / "learning_graph-MUTAG.png").exists()


def test_curve_table_gives_each_cells_mean_curve_by_epoch_ending_at_the_last_epoch_metric(tmp_path):
    """Per trained cell, the mean over seeds of the evaluation at each 1-based epoch, the last
    column the last-epoch metric, the baseline first; untrained runs have no row; more evaluated
    epochs than CURVE_COLUMNS are thinned evenly, keeping the first and the last."""
    folder = tmp_path / "res"
    for seed in range(2):
        for beta, tau, rid in ((1.0, 0.1, "b"), (0.0, 0.0, "a")):
            r = rec(f"{rid}{seed}", beta, tau, seed, 90.0 + seed + beta)
            r["curves"][0]["eval_svc_acc"] = 70.0 + seed + 2 * beta
            results.write_record(folder, r)
        results.write_record(folder, rec(f"f{seed}", 0.0, 0.0, seed, 60.0, epochs=0))
    df = report.load_frame(folder)
    records = results.load_records(folder)
    epochs = records[0]["spec"]["train"]["epochs"]
    header, rows = report.tables.curve_table(records, dict(zip(df["run_id"], df["setting"])), "graph", "MUTAG",
                                             "svc_acc")
    assert header == ["method", "β", "τ+", "n", "epoch 1", f"epoch {epochs}"]
    assert [row[1:] for row in rows] == [["0", "0", "2", "70.50", "90.50"], ["1", "0.1", "2", "72.50", "91.50"]]
    long = rec("L0", 0.0, 0.0, 0, 50.0, epochs=25)
    long["curves"] = [{"epoch": e, "eval_svc_acc": float(e)} for e in range(25)]
    header, rows = report.tables.curve_table([long], {}, "graph", "MUTAG", "svc_acc")
    cols = [int(h.removeprefix("epoch ")) for h in header[4:]]
    assert len(cols) == report.tables.CURVE_COLUMNS and cols[0] == 1 and cols[-1] == 25
    assert cols == sorted(set(cols)) and rows[0][-1] == "50.00" and rows[0][4] == "0.00"


def test_parity_rows_test_our_baseline_against_the_targets_summary(tmp_path):
    """Our raw-score JSD baseline on PTC_MR against the authors' code's 58.00 ± 2.19 (10): Welch t
    from summary statistics equals scipy's; cosine-score and hard cells are not parity rows."""
    folder = tmp_path / "res"
    vals = [55.0, 57.5, 56.0, 58.5, 54.0]
    for seed, v in enumerate(vals):
        results.write_record(folder, rec(f"j{seed}", 0.0, 0.0, seed, v, dataset="PTC_MR"))
        r = rec(f"c{seed}", 0.0, 0.0, seed, v + 5, dataset="PTC_MR")
        r["spec"]["options"]["scores"] = "cosine"
        results.write_record(folder, r)
        results.write_record(folder, rec(f"h{seed}", 1.0, 0.5, seed, v + 9, dataset="PTC_MR"))
    df = report.load_frame(folder)
    rows = report.verdict.parity_rows(df, "graph", "PTC_MR")
    assert len(rows) == 1 and rows[0][1] == "jsd"
    want = stats.ttest_ind_from_stats(sum(vals) / 5, stats.tstd(vals), 5, 58.00, 2.19, 10, equal_var=False)
    gap = sum(vals) / 5 - 58.0
    assert rows[0][5].startswith(f"{gap:.2f} [") and rows[0][6] == f"{want.pvalue:.3g}"
    assert rows[0][8] == ("yes" if abs(gap) <= 1 else "no") == "no"
    assert report.verdict.parity_rows(df, "graph", "MUTAG") == []
    assert "Parity with the targets above" in report.write_report(folder, tmp_path / "out").read_text()


def test_verdict_rows_show_prior_and_fn_share_and_known_data_copies_are_named(tmp_path):
    """Beside ESS and floor rate every verdict row has the measured class prior and the false-negative
    weight share (means over seeds); a record whose data checksum names a known copy gets its note."""
    folder = tmp_path / "res"
    for seed in range(2):
        for beta, tau, rid in ((0.0, 0.0, "a"), (1.0, 0.1, "b")):
            r = rec(f"{rid}{seed}", beta, tau, seed, 80.0 + seed + beta)
            r["diagnostics"] = {"ess": 0.5, "floor_rate": 0.0, "true_class_prior": 0.25 + 0.1 * seed,
                                "fn_weight_share": 0.5}
            r["data_checksums"] = {"MUTAG": next(iter(report.published.DATA_COPIES))}
            results.write_record(folder, r)
        results.write_record(folder, rec(f"f{seed}", 0.0, 0.0, seed, 70.0, epochs=0))
    text = report.write_report(folder, tmp_path / "out").read_text()
    head = next(line for line in text.splitlines() if line.startswith("| method | β | τ+ | ESS"))
    assert "| prior | fn share |" in head
    row = next(line for line in text.splitlines() if line.startswith("| hard-jsd | 1 | 0.1 |"))
    assert "| 0.30 | 0.50 |" in row
    assert "Data: CIFAR-10 as JPEG files re-encoded at quality 75" in text
