"""The ``ablate`` command as a user meets it: its own help and version, one line and exit code 2 for every problem
the user fixes (a table of bad inputs, each leaving the store as it was), a whole traceback for an internal error.
The command runs in this process (``conftest.ablate_cli``); a process starts only where the process is what is
tested (what ``--help`` imports, a real exit code)."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import QUICK, REPO, ablate_cli, stopped_at_exit
from tests.servers import free_port


def recorded(uri):
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.fixture
def bad_files(tmp_path):
    """Data files a user gets wrong, each in the test's working folder."""
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 5))
    rows = [[i % 3, 0, 255, 12, 7] for i in range(60)]

    def csv(name, lines, head=header):
        (tmp_path / name).write_text("\n".join(([head] if head else []) + [",".join(map(str, r)) for r in lines]) + "\n")

    csv("no_header.csv", rows, head=None)
    csv("scaled.csv", [[r[0], *[v / 255 for v in r[1:]]] for r in rows])
    csv("label12.csv", [*rows[:5], [12, 0, 1, 2, 3], *rows[5:]])
    csv("text.csv", [*rows[:5], [1, 0, "dark", 2, 3], *rows[5:]])
    csv("short.csv", [*rows[:5], [1, 0, 2], *rows[5:]])
    np.savez(tmp_path / "good.npz", x=np.zeros((60, 4)), y=np.arange(60) % 3)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:300])
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "conf" / "claims").mkdir(parents=True)
    (tmp_path / "conf" / "claims" / "broken.yaml").write_text("mine:\n  text: x\n  a: {model.bn: pre\n  b: {}\n")
    (tmp_path / "not_a_store.db").write_bytes(os.urandom(4096))
    (tmp_path / "broken.csv.gz").write_bytes(gzip.compress(b"label,p\n1,2\n")[:15])
    return tmp_path


D = ("data=digits", "trainer.epochs=1", "trainer.device=cpu")
CSV = ("data=fmnist_small", "data.shape=null", "data.n_classes=3", "data.limit=null", "trainer.epochs=1")
BAD = [  # (argv, what the one line says)
    (("trainer.epoch=1",), "trainer.epoch is not a setting ablate has, so nothing would read it (did you mean "
                           "trainer.epochs?"),
    (("+trainer.epoch=1",), "did you mean trainer.epochs?"),
    (("model.droput=0.2",), "did you mean model.dropout?"),
    (("nokey=3",), "nokey is not a setting ablate has"),
    (("model.bn=foo",), "model.bn=foo is not allowed: model.bn must be one of none, pre, post."),
    (("model=foo",), "model=foo is not an option: model is one of cnn, custom, mlp."),
    (("optim=sgdd",), "optim=sgdd is not an option: optim is one of adam, adamw, sgd (did you mean optim=sgd?)."),
    (("data=digit",), "(did you mean data=digits?)"),
    (("+experiment=bnn",), "experiment=bnn is not an option"),
    (("trainer.epochs=abc",), "trainer.epochs=abc is not allowed: trainer.epochs must be an integer."),
    (("optim.lr=fast",), "optim.lr must be a number"),
    (("trainer.tf32=maybe",), "trainer.tf32 must be true or false"),
    (("model.dropout=1.5",), "model.dropout=1.5 is not allowed: model.dropout must be in [0, 1)."),
    (("optim.lr=-1",), "optim.lr must be positive"),
    (("trainer.epochs=0",), "trainer.epochs must be at least 1"),
    (("trainer.batch_size=1",), "trainer.batch_size must be at least 2"),
    (("data.val_fraction=0.9",), "data.val_fraction + data.test_fraction"),
    (("seed=-1",), "seed=-1 is not allowed"),
    (("trainer.device=tpu",), "trainer.device must be one of auto, cpu, cuda, mps"),
    (("optim.nesterov=true",), "optim.nesterov must be false unless optim.momentum > 0"),
    (("tracking.dead_after_s=1",), "tracking.dead_after_s must be at least twice tracking.heartbeat_s"),
    (("trainer.probes=[curvature]",), "trainer.probes=[curvature] is not allowed: trainer.probes must be one of "
                                      "activations,"),
    (("data.augment=[rotate]",), "data.augment=[rotate] is not allowed: data.augment must be one of crop, flip."),
    (("model.hidden=[]",), "model.hidden must be a non-empty list"),
    (("model=cnn", "model.kernel_size=2"), "model.kernel_size must be an odd positive size"),
    (("model=cnn", "model.hidden=[4]"), "model.hidden is not a setting ablate has"),
    (("model.kwargs.width=3",), "model.kwargs is not a setting ablate has"),
    (("model.bn=[",), "an override could not be read"),
    (("reprot",), "'reprot' is not an ablate command (did you mean report?)"),
    (("search.storage=postgresql://ada:s3cret@db/optuna",), "search.storage holds a password in clear "
                                                           "(postgresql://ada:***@db/optuna)"),
    (("model=custom",), "model.target is not set, and model=custom needs it: give model.target=..."),
    (("model=custom", "model.target=no_such_module.Net", *D), "model.target=no_such_module.Net: cannot import"),
    (("model=custom", "model.target=tests.user_models.NoDropout", "model.dropout=0.2", *D),
     "tests.user_models.NoDropout does not take `dropout`: add a `dropout` parameter, or drop `model.dropout`."),
    (("model=custom", "model.target=tests.user_models.WrongOutput", *D), "returns [2, 11] for a batch of [2, 1, 8, 8]"),
    (("model=custom", "model.target=tests.user_models.Raises", "model.bn=pre", *D), "raised ValueError: needs at "
                                                                                       "least 3"),
    (("model=cnn", "model.channels=[2,2,2,2]", *D), "halves a 8x8 image 4 times"),
    (("data=fmnist_small", "data.augment=[crop]", "data.shape=null", "trainer.epochs=1"),
     "data.augment=['crop'] works on images"),
    (("data=npz", "data.path=missing.npz", *D[1:]), "Data file missing.npz does not exist"),
    (("data=npz", "data.path=a_folder", *D[1:]), "data.path=a_folder is a folder, not a .npz file"),
    (("data=npz", "data.path=truncated.npz", *D[1:]), "truncated.npz is not a readable .npz file"),
    (("data=npz", f"data.path={'x' * 300}.npz", *D[1:]), "cannot be looked up (File name too long)"),
    ((*CSV, "data.path=no_header.csv"), "no_header.csv has no header: its first line holds numbers"),
    ((*CSV, "data.path=scaled.csv"), "every value lies in [0, 1], as if already divided by 255"),
    ((*CSV, "data.path=label12.csv"), "label12.csv, line 7: label 12 is not a class in 0..2"),
    ((*CSV, "data.path=text.csv"), "text.csv, line 7, column 3: the cell holds 'dark', not a number"),
    ((*CSV, "data.path=short.csv"), "short.csv, line 7: 3 cells where the header has 5"),
    ((*CSV, "data.path=broken.csv.gz"), "broken.csv.gz cannot be read"),
    ((*CSV, "data.path=scaled.csv", "data.scale=byte"), "as if already divided by 255"),
    ((*CSV, "data.path=label12.csv", "data.scale=unit"), "line 7: label 12"),
    (("data=digits", "data.n_classes=5", *D[1:]), "label 5 of sample"),
    (("data=digits", "data.scale=byte"), "data.scale must be auto for data=digits"),
    (("-m", "seed=range(0)", *D), "no variants to train"),
    (("-m", "seed=0,1", "hydra/launcher=population", "hydra.launcher.max_size=0", *D),
     "hydra.launcher.max_size must be at least 1"),
    (("-m", "model.bn=pre,foo", *D), "model.bn=foo is not allowed"),
    (("tracking.uri=foo://bar", *D), "tracking.uri=foo://bar: there is no store for the scheme 'foo'"),
    (("tracking.uri=sqlite:///a_folder", *D), "is a folder, not a SQLite file"),
    (("tracking.uri=sqlite:///not_a_store.db", *D), "is not a SQLite database"),
    (("hydra.run.dir=a_file/out", *D), "a_file/out: Not a directory. Check that its folder exists and is writable"),
    (("hydra.run.dir=/sys/ablate_out", *D), "/sys/ablate_out: Operation not permitted."),  # refused even to root
    ((f"tracking.experiment={'e' * 10000}", *D), "'name' exceeds the maximum length of 500 characters"),
    (("claims", "model.bn=foo"), "model.bn=foo is not allowed"),
    (("claims", "claims=[broken]"), "broken.yaml, line 4, column 4: not valid YAML (while parsing a flow mapping"),
    (("claims", "judge.seeds=1"), "judge.seeds=1 is not allowed: judge.seeds must be auto or a number, at least 3"),
    (("claims", "judge.vary=[init,seed]"), "judge.vary=[init,seed] is not allowed: judge.vary must be one of init, order, noise, split."),
    (("seeds.init=-1",), "seeds.init=-1 is not allowed: seeds.init must be unset or in [0, 2**32)"),
    (("claims", "judge.seeds=many"), "judge.seeds='many' is not allowed: judge.seeds must be auto or a number"),
    (("report", "sweep=sweep-nothing"), "sweep sweep-nothing has no FINISHED runs"),
    (("report", "tracking.uri=http://127.0.0.1:{port}"), "cannot reach the MLflow store http://127.0.0.1:"),
    (("search", "search.n_trials=-1"), "search.n_trials must be 0 or more"),
    (("search", "data.val_fraction=0", *D), "the search chooses on validation accuracy"),
    (("init", "a", "b"), "ablate init takes one folder"),
    (("ui", "workers=0"), "workers=0 is not allowed: workers must be at least 1"),
    (("-m", "--cfg", "hydra"), "-m and --cfg do not go together: give one of -m (a sweep), --cfg"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_every_problem_a_user_fixes_is_one_line_and_exit_2_and_changes_nothing_in_the_store(
        argv, message, bad_files, tracking_uri):
    ran = ablate_cli(*[a.format(port=free_port()) for a in argv])
    assert ran.code == 2, ran.text[-3000:]
    lines = [line for line in ran.err.splitlines() if line.strip() and "member-epochs" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], ran.text[-3000:]
    assert "Traceback" not in ran.text
    assert not recorded(tracking_uri)  # no run, no sweep's parent: the store as it was


def test_there_are_at_least_40_of_them():
    assert len(BAD) >= 40


def test_hydra_full_error_shows_hydras_own(monkeypatch, tracking_uri):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        ablate_cli("model.bn=foo")
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


def test_an_internal_error_keeps_its_whole_traceback(monkeypatch, tracking_uri):
    """A bug is not a user's problem: its run is FAILED with the traceback kept (console and error.txt), exit 1."""
    from ablate.engine import trainer

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in the trainer")

    monkeypatch.setattr(trainer, "train_epoch", broken)
    ran = ablate_cli(*QUICK)
    assert ran.code == 1 and "Traceback (most recent call last)" in ran.text and "ZeroDivisionError" in ran.text
    [run] = recorded(tracking_uri)
    assert run.info.status == "FAILED" and run.data.tags["ablate.error"] == "ZeroDivisionError: a bug in the trainer"
    text = open(MlflowClient(tracking_uri).download_artifacts(run.info.run_id, "error.txt")).read()
    assert text.startswith("Traceback") and "in broken" in text


def test_help_lists_the_commands_the_common_overrides_and_their_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = ablate_cli("--help")
    assert ran.code == 0
    for name in ("init", "claims", "report", "search", "ui", "server"):
        assert f"\n  {name} " in ran.out
    for text in ("model=cnn|custom|mlp", "model.bn=none|pre|post", "optim=adam|adamw|sgd", "fmnist_small",
                 "trainer.device=auto|cpu|cuda|mps", "+experiment=ablation_grid", "hydra/launcher=population"):
        assert text in ran.out
    assert ablate_cli("--version").out.strip() == "ablate 0.1.0"


@pytest.mark.parametrize("command, words", [("claims", ["judge.seeds=30", "verdict"]), ("report", ["sweep=None"]),
                                            ("search", ["search.n_trials=20"]), ("ui", ["port=5000"]),
                                            ("init", ["usage: ablate init DIR"])])
def test_each_commands_help_is_ablates_own(command, words):
    ran = ablate_cli(command, "--help")
    assert ran.code == 0 and "Hydra" not in ran.text
    for word in words:
        assert word in ran.text


def test_hints_name_the_command_as_it_was_invoked(tracking_uri):
    ran = ablate_cli(*QUICK)
    assert ran.code == 0 and "look at it: python -m ablate ui" in ran.text  # run here as python -m ablate would be


def test_a_run_prints_its_epochs_and_where_it_went(tracking_uri):
    ran = ablate_cli(*QUICK, "model.bn=post", "model.dropout=0.1", "optim.lr=0.05", "optim.weight_decay=1e-4", "seed=3")
    assert ran.code == 0, ran.text[-2000:]
    assert "bn=post, relu, dropout=0.1, sgd lr=0.05, weight_decay=0.0001" in ran.text and "seed=3" in ran.text
    assert "epoch   2/2" in ran.text and "FINISHED" in ran.text and "#/experiments/" in ran.text
    assert tracking_uri in ran.text


def test_a_password_in_clear_is_refused_before_hydra_writes_it_anywhere(tracking_uri, tmp_path):
    for args in ([], ["-m", "seed=0,1"]):
        ran = ablate_cli(*args, *QUICK, "search.storage=postgresql://ada:s3cret@db/optuna")
        assert ran.code == 2 and "search.storage='${oc.env:OPTUNA_STORAGE}'" in ran.err and "s3cret" not in ran.text
    assert not [f for f in tmp_path.rglob("*") if f.is_file() and "s3cret" in f.read_text(errors="replace")]


@pytest.mark.slow
def test_ablate_help_is_fast_because_it_imports_none_of_torch_mlflow_optuna_pandas(tmp_path):
    code = ("import sys, runpy; sys.argv = ['ablate', '--help']; runpy.run_module('ablate', run_name='__main__'); "
            "print([m for m in ('torch', 'mlflow', 'optuna', 'pandas', 'hydra') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("[]"), out.stdout[-500:] + out.stderr[-2000:]


@pytest.mark.slow
def test_the_console_script_exits_2_for_a_bad_value_and_130_when_interrupted(tmp_path):
    """The real process: its exit codes as a shell sees them."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-m", "ablate", "model.bn=foo"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr == "error: model.bn=foo is not allowed: model.bn must be one of none, " \
                                                "pre, post.\n"
    run = subprocess.Popen([sys.executable, "-m", "ablate", "data=digits", "trainer.epochs=200"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with stopped_at_exit(run):
        for line in run.stdout:
            if "epoch   2/200" in line:
                break
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted (Ctrl-C): finished runs stay recorded" in err, err[-2000:]
    [killed] = recorded(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert killed.info.status == "KILLED" and time.time() > 0


def test_ablate_inits_grid_trains_its_model_as_populations_over_enough_seeds_for_the_report(tracking_uri, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ablate_cli("init", "study").code == 0
    monkeypatch.chdir(tmp_path / "study")
    monkeypatch.syspath_prepend(str(tmp_path / "study"))  # as the command adds the working folder
    ran = ablate_cli("-m", "+experiment=my_grid", "data=digits", "trainer.epochs=1", "model.dropout=0")
    assert ran.code == 0, ran.text[-3000:]
    assert "18 variants in 3 population(s) of up to 6" in ran.out and "custom: vectorised" in ran.out
    finished = [r for r in recorded(tracking_uri) if r.info.status == "FINISHED" and r.data.tags.get("ablate.kind") == "train"]
    assert len(finished) == 18 and {r.data.params["seed"] for r in finished} == {str(s) for s in range(6)}


def test_a_command_stopped_by_a_signal_leaves_no_stop_behind_in_the_process():
    """An entry point run in a process that goes on (a notebook, a test): the stop it received ended it with 130 and
    stops nothing after it."""
    import signal

    from ablate.cli import run_command
    from ablate.errors import first_signal, raise_if_stopped

    def stopped_by_ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        raise_if_stopped()  # where a command meets the stop it received

    with pytest.raises(SystemExit) as stopped:
        run_command(stopped_by_ctrl_c, "stopped")
    assert stopped.value.code == 130
    assert first_signal() is None
    raise_if_stopped()  # the next run's check between epochs: nothing to raise
