import math
import time

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from scipy import stats

import ablate
from ablate.config import TrackingConfig

from ablate.analysis.report import best_lines, build_report
from ablate.analysis.tables import load_runs, summary_table
from ablate.analysis.stats import adjust, best_against_others, effect_table, mean_ci, t_pvalue
from ablate.tracking.tracker import RunKind, Tracker


def test_mean_ci_on_known_values():
    mean, std, half, n = mean_ci(pd.Series([1.0, 2.0, 3.0]))
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, df=2) = 4.302653
    assert math.isnan(mean_ci([5.0])[2]) and mean_ci([])[3] == 0


def test_effect_and_summary_tables_on_constructed_runs():
    runs = pd.DataFrame({"run_id": list("abcdef"), "model.bn": ["pre"] * 3 + ["none"] * 3, "seed": [0, 1, 2] * 2,
                         "val_acc": [0.8, 0.82, 0.84, 0.7, 0.7, 0.7], "test_acc": [0.81, 0.8, 0.79, 0.6, 0.7, 0.8],
                         "train_loss": [0.5] * 6, "epochs_to_target": [2, 3, np.nan, np.nan, np.nan, np.nan]})
    table = effect_table(runs, "model.bn", ["val_acc"]).set_index("model.bn")
    assert table.loc["pre", "val_acc"] == pytest.approx(0.82) and table.loc["pre", "val_acc std"] == pytest.approx(0.02)
    assert table.loc["none", "val_acc std"] == pytest.approx(0.0) and table.loc["none", "runs"] == 3
    summary = summary_table(runs, ["model.bn"]).set_index("model.bn")
    assert summary.loc["none", "test_acc std"] == pytest.approx(0.1) and summary.loc["pre", "epochs_to_target"] == 2.5
    assert best_lines(runs, ["model.bn"])[2].startswith("model.bn = pre: val acc 0.8200")


def test_the_best_variant_is_chosen_on_validation_where_test_would_choose_another():
    runs = pd.DataFrame({"run_id": list("abcd"), "model.bn": ["pre", "pre", "post", "post"], "seed": [0, 1] * 2,
                         "val_acc": [0.80, 0.82, 0.84, 0.86], "test_acc": [0.90, 0.91, 0.70, 0.71]})
    lines = best_lines(runs, ["model.bn"])
    assert lines[2] == "model.bn = post: val acc 0.8500, test acc 0.7050 over 2 run(s)."  # test reported, never used


def test_report_on_a_small_grid_matches_the_runs_in_mlflow(tracking_uri, tmp_path):
    sweep_id = ablate.sweep(["model.bn=pre,none", "model.dropout=0,0.3", "seed=0,1", "data=digits", "trainer.epochs=2",
                             "trainer.device=cpu", "trainer.probes=[landscape,variance_shift]",
                             "trainer.probe_every=30"], quiet=True)
    tracker = Tracker(TrackingConfig(uri=tracking_uri))
    client = MlflowClient(tracking_uri)
    report = build_report(tracker, sweep_id, tmp_path / "reports")
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert len(pngs) >= 3 and "learning_curves.png" in pngs and "gap_vs_dropout.png" in pngs
    assert "interaction_bn_x_dropout.png" in pngs  # two factors: their interaction, n per cell
    assert {"probe_landscape.png", "probe_variance_shift.png"} <= set(pngs)  # the probes recorded, drawn
    assert not {"probe_activations.png", "probe_covariate_shift.png"} & set(pngs)  # and only those
    run_id = load_runs(tracker, sweep_id).query("`model.bn` == 'pre'")["run_id"].iloc[0]
    assert [step for step, _ in tracker.metric_history(run_id, "variance_shift/1")] == [0, 30, 60, 74]
    assert "## Best variant" in report.read_text() and "p adj (Holm)" in report.read_text()
    assert "partial sweep" not in report.read_text()

    # Recompute one cell from the raw runs: mean test accuracy of bn=none over its 4 runs.
    raw = [r.data.metrics["test_acc"] for r in client.search_runs([tracker.experiment_id],
                                                                  "tags.`ablate.kind` = 'train' and params.`model.bn` = 'none'")]
    assert len(raw) == 4
    text = report.read_text()
    row = next(line for line in text.split("## Main effect of BatchNorm")[1].splitlines() if line.startswith("| none"))
    test_cell = row.split("|")[4]
    assert f"{np.mean(raw):.4f} ± {np.std(raw, ddof=1):.4f}" in test_cell
    assert load_runs(tracker, sweep_id).shape[0] == 8
    artifacts = [a.path for a in client.list_artifacts(client.search_runs(
        [tracker.experiment_id], "tags.`ablate.kind` = 'sweep'")[0].info.run_id, "report")]
    assert "report/report.md" in artifacts and len(artifacts) == 1 + len(pngs)


def grid(values_by_variant, seeds=10):
    return pd.DataFrame([{"run_id": f"{v}{s}", "model.bn": v, "seed": s, "val_acc": f(s)}
                         for v, f in values_by_variant.items() for s in range(seeds)])


NOISE = [0.002, -0.003, 0.001, 0.004, -0.002, 0.003, -0.001, 0.0, -0.004, 0.002]


def test_the_best_is_chosen_on_half_the_seeds_and_tested_on_the_other_half_paired_holm_corrected():
    runs = grid({"pre": lambda s: 0.85 + NOISE[s], "post": lambda s: 0.80 + NOISE[s] * 0.5,
                 "none": lambda s: 0.70 - NOISE[s]})
    table = best_against_others(runs, ["model.bn"])
    assert table.attrs["best"] == {"model.bn": "pre"}
    assert table.attrs["chosen_on"] == [0, 2, 4, 6, 8] and table.attrs["tested_on"] == [1, 3, 5, 7, 9]
    assert list(table["model.bn"]) == ["post", "none"] and set(table["test"]) == {"paired t"}
    d = np.array([0.05 + NOISE[s] * 0.5 for s in (1, 3, 5, 7, 9)])  # the test seeds only
    raw = stats.ttest_1samp(d, 0, alternative="greater").pvalue
    assert table.loc[0, "p"] == pytest.approx(raw) and table.loc[0, "n"] == 5
    assert table.loc[0, "p adj (Holm)"] == pytest.approx(max(table["p"].min() * 2, raw))  # step-down over two tests
    lines = best_lines(runs, ["model.bn"])
    assert lines[2].startswith("model.bn = pre: val acc 0.85")
    assert lines[4].startswith("It was chosen on seeds 0, 2, 4, 6, 8 and tested on seeds 1, 3, 5, 7, 9, and is "
                               "distinguishable from the runner-up (model.bn = post): +0.05")


def test_a_runner_up_within_noise_too_few_seeds_and_unmatched_seeds_are_said_so():
    close = grid({"pre": lambda s: 0.80 + NOISE[s], "post": lambda s: 0.80 - NOISE[s]})
    assert "is not distinguishable from the runner-up (model.bn = " in best_lines(close, ["model.bn"])[4]
    unmatched = pd.concat([grid({"pre": lambda s: 0.9 + NOISE[s]}), grid({"post": lambda s: 0.7 + NOISE[s]})
                           .assign(seed=lambda f: f["seed"] + 10)])
    assert best_against_others(unmatched, ["model.bn"]).loc[0, "test"] == "Welch t"  # no shared seed: unpaired
    few = grid({"pre": lambda s: 0.9, "post": lambda s: 0.8}, seeds=3)
    assert "too few runs to choose on half and test on the other" in best_lines(few, ["model.bn"])[4]


def test_one_best_variant_is_named_and_a_runner_up_better_on_the_test_seeds_gets_a_signed_difference():
    """Chosen on the even seeds, pre leads; on the odd ones post is better: one best (pre) in the heading and the
    sentence, and its difference written -0.0200, never +-0.0200."""
    runs = grid({"pre": lambda s: 0.82 if s % 2 == 0 else 0.78, "post": lambda s: 0.80})
    text = "\n".join(best_lines(runs, ["model.bn"]))
    assert "model.bn = pre: val acc 0.8000" in text and "(model.bn = post): -0.0200 validation accuracy" in text
    assert "+-" not in text and text.count("model.bn = post") == 1


def test_on_equal_variants_the_best_is_called_better_than_another_at_most_at_the_stated_rate():
    """1,000 simulated studies of 5 equal variants over 10 seeds (a shared per-seed effect, as real seeds have): the
    share in which the report calls the best better than any other variant (a Holm-adjusted p below alpha) stays
    within alpha plus 3 binomial standard errors. Choosing and testing on the same seeds, as this report once did,
    is printed beside it: the winner's curse."""
    rng = np.random.default_rng(0)
    studies, alpha, called, runner_up, naive = 1000, 0.05, 0, 0, 0
    for _ in range(studies):
        values = 0.8 + rng.normal(0, 0.02, (10, 1)) + rng.normal(0, 0.01, (10, 5))  # seeds x variants
        runs = pd.DataFrame({"model.bn": np.repeat(list("abcde"), 10), "seed": np.tile(np.arange(10), 5),
                             "val_acc": values.T.ravel()})
        table = best_against_others(runs, ["model.bn"], alpha=alpha)
        called += (table["p adj (Holm)"] < alpha).any()
        runner_up += table.loc[0, "p adj (Holm)"] < alpha
        best = values.mean(0).argmax()
        naive += min(adjust([t_pvalue(values[:, best] - values[:, v], "greater") for v in range(5) if v != best],
                            "holm", alpha)[0]) < alpha
    rate, bound = called / studies, alpha + 3 * np.sqrt(alpha * (1 - alpha) / studies)
    print(f"\nequal variants, the best called better than another: {rate:.3f} chosen on half and tested on the "
          f"other ({runner_up / studies:.3f} better than the runner-up), {naive / studies:.3f} chosen and tested on "
          f"the same seeds; alpha {alpha}")
    assert rate <= bound and runner_up <= called


def test_a_variant_rerun_after_its_config_gained_a_key_counts_once_and_the_report_names_the_mixed_code(
        tracking_uri, tmp_path):
    """A sweep resumed after an upgrade that added a config key: each variant's new run has another config hash
    than its old one, yet it is the same variant (the same factor values) and replaces it. Where only some were
    rerun, the report says that its runs come from two versions of the code."""
    from ablate.analysis.tables import runs_frame
    from ablate.tracking.tracker import TAG_CODE, TAG_FACTORS, TAG_HASH, TAG_KIND, TAG_SWEEP, RunStatus

    tracker, sweep_id = Tracker(TrackingConfig(uri=tracking_uri)), "sweep-upgraded"
    tracker.start_run("sweep", {TAG_SWEEP: sweep_id, TAG_KIND: "sweep", TAG_FACTORS: "model.bn,seed"}).end(
        RunStatus.finished)

    def record(bn, seed, code, val_acc):
        run = tracker.start_run(f"{bn} {seed}", {TAG_SWEEP: sweep_id, TAG_KIND: "train", TAG_CODE: code,
                                                 TAG_HASH: f"{code}-{bn}-{seed}"})
        run.log_params({"model.bn": bn, "seed": seed})
        run.log_metrics({"val_acc": val_acc, "test_acc": val_acc})
        run.end(RunStatus.finished)
        time.sleep(0.01)  # start times in ms: the rerun is the later one

    for bn in ("pre", "none"):
        for seed in (0, 1):
            record(bn, seed, "0.1+old", 0.5)
    for seed in (0, 1):  # the upgrade reran bn=pre only so far
        record("pre", seed, "0.2+new", 0.9)
    runs = load_runs(tracker, sweep_id)
    assert len(runs) == 4 and set(runs.groupby("model.bn")["val_acc"].mean().items()) == {("pre", 0.9), ("none", 0.5)}
    assert set(runs.query("`model.bn` == 'pre'")["code_version"]) == {"0.2+new"}
    records = tracker.runs(sweep_id=sweep_id, kind=RunKind.train)
    assert len(runs_frame(records, ["model", "seed"])) == 6  # a group swept is no param: by config hash
    text = build_report(tracker, sweep_id, tmp_path / "reports").read_text()
    assert "partial sweep" not in text  # the parent says nothing of its size: nothing claimed
    assert "These runs come from 2 versions of ablate's code** (2 from 0.1+old, 2 from 0.2+new)" in text


def test_a_report_on_a_partial_sweep_says_how_many_variants_it_rests_on_and_which_are_missing(tracking_uri, tmp_path):
    from ablate.tracking.tracker import TAG_FACTORS, TAG_HASH, TAG_KIND, TAG_SWEEP, TAG_VARIANTS, RunStatus

    tracker, sweep_id = Tracker(TrackingConfig(uri=tracking_uri)), "sweep-partial"
    tracker.start_run("sweep", {TAG_SWEEP: sweep_id, TAG_KIND: "sweep", TAG_FACTORS: "model.bn,seed",
                                TAG_VARIANTS: "4"}).end(RunStatus.killed)
    for bn, seed, status in [("pre", 0, RunStatus.finished), ("pre", 1, RunStatus.finished),
                             ("none", 0, RunStatus.finished), ("none", 1, RunStatus.killed)]:
        run = tracker.start_run(f"{bn} {seed}", {TAG_SWEEP: sweep_id, TAG_KIND: "train", TAG_HASH: f"{bn}{seed}"})
        run.log_params({"model.bn": bn, "seed": seed})
        run.log_metrics({"val_acc": 0.8, "test_acc": 0.8})
        run.end(status)
    text = build_report(tracker, sweep_id, tmp_path / "reports").read_text()
    assert ("**A partial sweep: 3 of its 4 variants have a FINISHED run.** Everything below rests on those alone; "
            "missing: model.bn = none, seed = 1.") in text


def test_a_sweep_that_crosses_the_sources_of_variance_reports_each_ones_share(tracking_uri, tmp_path):
    """Initialisation, batch order and data split crossed (3 x 2 x 2 runs per BN placement): a share each."""
    sweep_id = ablate.sweep(["model.bn=pre,none", "seeds.init=0,1,2", "seeds.order=0,1", "data.split_seed=0,1",
                             "data=digits", "trainer.epochs=1", "trainer.device=cpu"], quiet=True)
    report = build_report(Tracker(TrackingConfig(uri=tracking_uri)), sweep_id, tmp_path / "reports")
    text = report.read_text()
    assert (report.parent / "sources_of_variance.png").stat().st_size > 0 and "![sources_of_variance]" in text
    section = text.split("## Sources of variance (test_acc)", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[0] == "| model.bn | runs | test_acc std | init | order | split | interactions and the rest |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    assert sorted(r[0] for r in rows) == ["none", "pre"] and all(r[1] == "12" for r in rows)
    for row in rows:  # the shares, rounded to whole per cents, add up to 100 within the rounding
        assert abs(sum(int(v.rstrip("%")) for v in row[3:]) - 100) <= 2, row
