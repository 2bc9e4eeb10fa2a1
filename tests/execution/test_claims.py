"""The claims' experiment: the claim files composed and typed, their arms trained in every context over the
seeds as one resumable sweep, the same tables whatever the populations."""


import pytest
from mlflow import MlflowClient

from ablate.analysis.verdicts import Verdict
from ablate.claims import judge_command
from ablate.config.adapter import typed_object
from ablate.config.commands import Correction
from ablate.config.run import PROBE_SUMMARIES as SUMMARIES
from ablate.engine.families.cnn import CNNConfig
from ablate.engine.families.mlp import MLPConfig
from ablate.errors import ConfigValueError
from ablate.execution.compose import compose, composing
from tests.conftest import ONLY_DIGITS, fresh_store_in


# ------------------------------------------------------------------------------ claim files, composed
def judge_config(*overrides, searchpath=None):
    extra = [f"hydra.searchpath=[file://{searchpath}]"] if searchpath else []
    with composing():
        return typed_object(compose("judge", [*overrides, *extra]))  # as ablate claims does


def test_the_shipped_claims_are_the_notes_and_the_mechanisms_each_stating_its_test_in_advance():
    cfg = judge_config()
    assert len(cfg.claims) == 14 and cfg.judge.seeds >= 30 and cfg.judge.correction == Correction.holm
    assert set(cfg.judge.contexts) == {"fmnist_small", "fmnist_small_precise", "digits", "digits_precise"}
    assert all(c.minimal_effect > 0 for c in cfg.claims.values())
    for name, c in cfg.claims.items():  # a claim on a probe's summary probes it in both arms, the same way
        if c.metric in SUMMARIES:
            probe = SUMMARIES[c.metric][0].split("/")[0]
            assert probe in c.a["trainer.probes"] and c.a["trainer.probes"] == c.b["trainer.probes"], name


def test_the_judges_run_config_is_typed_like_a_runs_and_refuses_unknown_keys():
    assert type(judge_config().model) is MLPConfig and type(judge_config("model=cnn").model) is CNNConfig
    with pytest.raises(ConfigValueError, match=r"judge.seedz is not a setting .*did you mean judge.seeds\?"):
        judge_config("+judge.seedz=3")


def test_a_users_claim_file_is_judged_with_the_same_machinery(tmp_path):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "mine.yaml").write_text(
        "adam_beats_sgd:\n  text: Adam beats SGD on my model\n  a: {optim: adam}\n  b: {optim: sgd}\n"
        "  minimal_effect: 0.02\n")
    cfg = judge_config("claims=[notes,mine]", searchpath=tmp_path)
    assert list(cfg.claims)[-1] == "adam_beats_sgd" and len(cfg.claims) == 8
    assert judge_config("claims=[mine]", searchpath=tmp_path).claims["adam_beats_sgd"].a == {"optim": "adam"}


@pytest.mark.parametrize("body, key", [
    ("  text: t\n  a: {model.bn: pre}\n  b: {model.bn: post}\n  direction: bigger\n", "direction"),
    ("  text: t\n  a: {model.bn: pre}\n  b: {model.bn: post}\n  metric: speed\n", "claims.bad.metric"),
    ("  text: t\n  a: {model.bnn: pre}\n  b: {model.bn: post}\n", "claims.bad"),
    ("  text: t\n  a: {model.bn: pre}\n  b: {model.bn: post}\n  minimal_effcet: 0.1\n", "minimal_effcet"),
])
def test_a_bad_claim_file_fails_at_composition_naming_the_key(tmp_path, body, key):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "mine.yaml").write_text("bad:\n" + body)
    with pytest.raises(ConfigValueError) as err:
        judge_config("claims=[mine]", searchpath=tmp_path)
    assert key in str(err.value) and "\n" not in str(err.value)


QUICK_JUDGE = ("judge.seeds=3", "trainer.epochs=1", "trainer.device=cpu", "judge.bootstrap=200", *ONLY_DIGITS)


def test_the_claims_command_end_to_end_gives_the_same_table_whatever_its_population_size(migrated_store, tmp_path,
                                                                                          monkeypatch):
    """The notes' seven claims and one built to diverge (A at lr 1e6 fails on every seed), judged twice in two stores:
    in populations of up to 1,000 and of 4 (the variants cut differently), the tables are the same, digit for digit."""
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "diverges.yaml").write_text(
        "diverges:\n  text: A diverges\n  a: {model.bn: none, optim.lr: 1e6}\n  b: {model.bn: none}\n")
    tables = []
    for size in (1000, 4):
        store = fresh_store_in(tmp_path / f"size{size}", migrated_store, monkeypatch)
        tables.append(judge_command([*QUICK_JUDGE, f"judge.population.max_size={size}", "claims=[notes,diverges]",
                                     f"hydra.searchpath=[file://{tmp_path}]"], quiet=True))
        client = MlflowClient(store)
        experiments = [e.experiment_id for e in client.search_experiments()]
        train = client.search_runs(experiments, "tags.`ablate.kind` = 'train'")
        assert len(train) == 14 * 3  # 14 distinct variants (the new claim shares arm B) over 3 seeds
        assert sum(r.info.status == "FAILED" for r in train) == 3  # the diverging arm, on every seed
        [parent] = client.search_runs(experiments, "tags.`ablate.kind` = 'sweep'")
        report = client.download_artifacts(parent.info.run_id, "report/claims.md")
        assert tables[-1].split("\n\n")[0] in open(report).read()
    assert tables[0] == tables[1]
    rows = tables[0].split("\n\n")[0].splitlines()[2:]  # after the header and its rule
    cfg = judge_config("claims=[notes]")
    assert len(rows) == 8 and [row.split(" | ")[0][2:] for row in rows[:7]] == [c.text for c in cfg.claims.values()]
    assert all(any(v.value in row for v in Verdict) and "of 1 contexts" in row for row in rows)
    detail = tables[0].split("\n\n")[1]
    [diverging] = [row for row in detail.splitlines() if row.startswith("| A diverges |")]
    assert "| 3/0 |" in diverging and "| CONTRADICTED |" in diverging  # scored 0: the failures count against A




def test_a_claims_arm_that_does_not_compose_is_one_line_naming_the_claim(tmp_path, tracking_uri):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "deeper.yaml").write_text(
        "deeper:\n  text: A deeper net\n  a: {model.kwargs.depth: 3}\n  b: {model.kwargs.depth: 1}\n")
    with pytest.raises(ConfigValueError) as err:
        judge_command([*QUICK_JUDGE, "claims=[deeper]", f"hydra.searchpath=[file://{tmp_path}]"], quiet=True)
    assert str(err.value).startswith("claims.deeper, arm a: model.kwargs is not a setting ablate has")
    assert "\n" not in str(err.value)


def test_seeds_on_demand_stop_each_claim_where_its_anytime_valid_sequence_settles_it(tracking_uri, tmp_path):
    """judge.seeds=auto: a large effect stops at the first look (seed 8), a claim whose arms compute the same numbers
    stops as futile, one within noise of its margin trains round after round up to judge.max_seeds (judge.min_reach=0:
    never stopped as out of reach, which ``tests/analysis`` checks); the rerun trains nothing and gives the same
    table."""
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "three.yaml").write_text(
        "large:\n  text: L2 shrinks the weights\n  a: {optim.weight_decay: 0.05}\n  b: {optim.weight_decay: 0}\n"
        "  metric: weight_norm\n  direction: less\n"
        "same:\n  text: the evaluation batch changes no number\n  a: {trainer.eval_batch_size: 100}\n"
        "  b: {trainer.eval_batch_size: 4096}\n  direction: greater\n"
        "noise:\n  text: dropout 0.1 against 0.05\n  a: {model.dropout: 0.1}\n  b: {model.dropout: 0.05}\n"
        "  minimal_effect: 0.0001\n")
    argv = ["judge.seeds=auto", "judge.max_seeds=12", "judge.round_seeds=4", "judge.min_reach=0", "trainer.epochs=1",
            "trainer.device=cpu", "judge.bootstrap=200", *ONLY_DIGITS, "claims=[three]",
            f"hydra.searchpath=[file://{tmp_path}]"]
    table = judge_command(argv, quiet=True)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if " | digits | " in line}
    assert "SUPPORTED at seed 8" in rows["L2 shrinks the weights"] and " | 8 | " in rows["L2 shrinks the weights"]
    assert "FUTILE at seed 8" in rows["the evaluation batch changes no number"] and "INCONCLUSIVE" in rows["the evaluation batch changes no number"]
    noise = rows["dropout 0.1 against 0.05"]
    assert " | 12 | " in noise and "OPEN after 12 seeds" in noise and "still open at judge.max_seeds=12" in noise
    client = MlflowClient(tracking_uri)

    def recorded(uri):
        return client.search_runs([e.experiment_id for e in client.search_experiments()])

    trained = [r for r in recorded(tracking_uri) if r.data.tags.get("ablate.kind") == "train"]
    assert len(trained) == 8 + 8 + 2 * 12  # L2's B arm and both evaluation batches are the default: one variant
    assert judge_command(argv, quiet=True) == table
    assert len([r for r in recorded(tracking_uri) if r.data.tags.get("ablate.kind") == "train"]) == len(trained)


@pytest.mark.parametrize("vary", ["[init,order,noise]", "[init]", "[order,split]"])
def test_a_claims_seeds_vary_the_sources_asked_for_and_hold_the_rest_at_the_base_seed(vary):
    from ablate.config.run import Source
    from ablate.execution.claims import compose_experiment
    from ablate.execution.compose import ComposeCache

    with composing() as loader:
        cfg = typed_object(compose("judge", [*QUICK_JUDGE, "claims=[notes]", f"judge.vary={vary}"]))
        cache = ComposeCache(lambda groups: compose("config", groups), loader)
        variants = list(compose_experiment(cfg, [], cache, range(3)).variants.values())
    varied = {Source(s) for s in vary.strip("[]").split(",")}
    for source in (Source.init, Source.order, Source.noise):
        used = {(v.seed, v.seed_of(source)) for v in variants}
        assert used == ({(s, s) for s in range(3)} if source in varied else {(s, cfg.seed) for s in range(3)}), source
    splits = {(v.seed, v.data.split_seed) for v in variants}
    assert splits == ({(s, s) for s in range(3)} if Source.split in varied else
                      {(s, cfg.data.split_seed) for s in range(3)})
