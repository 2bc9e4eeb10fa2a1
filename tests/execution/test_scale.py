"""Scale-out for real: Ray (a local instance), submitit (local processes standing in for SLURM), and several
sweep processes sharing an MLflow tracking server on the local PostgreSQL."""

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from optuna.trial import TrialState

from tests.conftest import REPO, ablate_cli, fresh_postgres_database, stopped_at_exit
from tests.servers import RAY_TOKEN, free_port, ray_head, serving

GRID = ("model.bn=pre,none", "seed=0,1", "data=digits", "trainer.epochs=1", "trainer.device=cpu")
LEASES = ("tracking.heartbeat_s=1", "tracking.dead_after_s=4")  # a dead worker's lease expires in seconds
SECRET = "s3cret-" + uuid.uuid4().hex[:6]  # PostgreSQL here trusts local users: any password connects


def ablate(*args, cwd, env_extra=None, module="ablate", wait=True):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    command = [sys.executable, "-m", module, *(["-m"] if module == "ablate" else []), *args]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        process.output = process.communicate(timeout=300)[0]
    return process


def train_runs(uri, experiment="ablate", kind="train"):
    """The experiment's runs of ``kind`` (train, sweep: a sweep's parent; None: all)."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    query = f"tags.`ablate.kind` = '{kind}'" if kind else ""
    return [] if found is None else client.search_runs([found.experiment_id], query)


def assert_each_variant_finished_once(runs, variants):
    finished = Counter(r.data.tags["ablate.config_hash"] for r in runs if r.info.status == "FINISHED")
    story = "\n".join(  # which worker held what, when, and why it ended: enough to tell a lease's failure
        f"{r.info.status} pid={r.data.tags.get('ablate.pid')} {r.data.tags['ablate.config_hash'][:8]} "
        f"start={r.info.start_time} end={r.info.end_time} beat={r.data.tags.get('ablate.heartbeat')} "
        f"code={r.data.tags.get('ablate.code_version')} sweep={r.data.tags.get('ablate.sweep_id')} "
        f"error={r.data.tags.get('ablate.error')}" for r in sorted(runs, key=lambda r: r.info.start_time))
    assert len(finished) == variants and set(finished.values()) == {1}, f"{finished}\n{story}"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert len({r.data.tags["ablate.sweep_id"] for r in runs}) == 1
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster's head (with a GPU it does not have): Ray sweeps connect to it by its address, as to a cluster's
    (a sweep's own local instance, ray.init(), is the installed wheel's test: tests/test_package.py)."""
    with ray_head(num_gpus=1) as address:
        yield address


def on_cluster(address: str) -> dict:
    return {"args": [f"hydra.launcher.ray.init.address={address}"], "env": {**RAY_TOKEN, "OMP_NUM_THREADS": "2"}}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["ray", "submitit_local", "population_ray"])
def test_a_grid_through_a_cluster_launcher_lands_once_per_variant(launcher, tracking_uri, tmp_path, request):
    ray = on_cluster(request.getfixturevalue("cluster")) if "ray" in launcher else {"args": [], "env": {}}
    extra = [*ray["args"], *(["hydra.launcher.max_size=2"] if launcher == "population_ray" else [])]
    # a task per variant: two of them (a submitit task is a process, its imports seconds of CPU); a task per
    # population: four variants, so that the two tasks are told apart from the variants
    per_population = launcher.startswith("population")
    grid = GRID if per_population else ("model.bn=pre", *GRID[1:])
    variants = 4 if per_population else 2
    out = ablate(*grid, f"hydra/launcher={launcher}", *extra, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "2",
                                                                                       **ray["env"]})
    assert out.returncode == 0, out.output
    runs = train_runs(tracking_uri)
    assert_each_variant_finished_once(runs, variants)
    # each process on the one CPU its task asked for, not torch's default (here 2: what every process would take)
    assert {r.data.tags["numeric_mode"] for r in runs} == {"float32 on cpu, 1 thread(s)"}
    assert f"{variants} FINISHED runs, 0 failed" in out.output
    assert "deprecated" not in out.output  # Hydra's note on the name of conf/hydra/launcher/{launcher}.yaml
    if per_population:  # the unit of remote work is a population group, not a variant
        assert sorted(Counter(r.data.tags["ablate.task"] for r in runs).values()) == [2, 2]
        assert len({r.data.tags["ablate.pid"] for r in runs}) == 2


@pytest.mark.slow
def test_submitit_tasks_each_a_population_a_crash_and_a_death_fail_only_their_own_runs(tracking_uri, tmp_path):
    """Four populations, one submitit task each, two members each: one trains; one cannot allocate memory after 5 steps
    (the worker's population fails, caught: its runs FAILED with the error); one task's process dies by SIGKILL after 150
    steps (its runs left RUNNING, ended FAILED by the sweep); one both. Every other variant is untouched."""
    out = ablate("model=custom", "model.target=tests.user_models.KillsItself", "+model.kwargs.kill_after=0,150",
                 "+model.kwargs.crash_after=0,5", "seed=0,1", "data=digits", "trainer.epochs=20",
                 "trainer.device=cpu", "hydra/launcher=population_submitit_local", cwd=tmp_path)
    assert out.returncode != 0 and "6 run(s) of sweep" in out.output, out.output[-3000:]
    runs = train_runs(tracking_uri)
    assert len(runs) == 8 and sorted(Counter(r.data.tags["ablate.task"] for r in runs).values()) == [2] * 4
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert {(r.data.params["model.kwargs.kill_after"], r.data.params["model.kwargs.crash_after"]) for r in finished} \
        == {("0", "0")} and len(finished) == 2  # a task per population: the unit of remote work
    crashed = [r for r in runs if "can't allocate memory" in r.data.tags.get("ablate.error", "")]
    assert len(crashed) == 4 and {r.data.params["model.kwargs.crash_after"] for r in crashed} == {"5"}
    assert {r.info.status for r in crashed} == {"FAILED"}  # caught in the worker, which ended them itself
    dead = [r for r in runs if r.data.tags.get("ablate.error", "").startswith("its worker task failed: ")]
    assert len(dead) == 2 and {r.info.status for r in dead} == {"FAILED"}  # ended by the sweep: SIGKILL after 150
    assert len({r.data.tags["ablate.task"] for r in dead}) == 1 and "kill_after=150" in dead[0].data.tags["ablate.error"]
    assert "process ended without a result" in dead[0].data.tags["ablate.error"]  # known at once: a local folder
    assert not {r.data.tags["ablate.pid"] for r in dead} & {r.data.tags["ablate.pid"] for r in finished}
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.parametrize("launcher", ["population_ray", "ray"])
def test_a_ray_address_nobody_answers_at_is_one_line_at_once(launcher, tracking_uri):
    """Said before Ray would retry for minutes (82 s with 2 of its 20 retries); nothing left RUNNING (one job per
    variant: Ray is joined before the sweep opens)."""
    address = f"127.0.0.1:{free_port()}"
    ran = ablate_cli("-m", "seed=0,1", "data=digits", "trainer.epochs=1", f"hydra/launcher={launcher}",
                     f"hydra.launcher.ray.init.address={address}")
    assert ran.code == 2 and f"error: cannot connect to the Ray cluster at {address}: nothing answers there ([Errno " \
                             f"111] Connection refused). Start it (`ray start --head`)" in ran.err, ran.err
    assert "Traceback" not in ran.text
    runs = train_runs(tracking_uri, kind=None)
    assert not [r for r in runs if r.info.status == "RUNNING"] and bool(runs) == (launcher == "population_ray")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["population_ray", "ray"])
def test_a_ray_cluster_that_asks_for_a_token_this_process_does_not_send_is_one_line(launcher, tracking_uri, tmp_path,
                                                                                    cluster):
    """Token authentication: Ray's default for ``ray start`` since 2.59 (Ray retries 20 times, here 2)."""
    out = ablate("seed=0,1", "data=digits", "trainer.epochs=1", f"hydra/launcher={launcher}",
                 f"hydra.launcher.ray.init.address={cluster}", cwd=tmp_path, env_extra={"RAY_NUM_REDIS_GET_RETRIES": "2"})
    assert out.returncode == 2 and f"error: cannot connect to the Ray cluster at {cluster}: it asks for a token and " \
                                   f"this process sends none. Run the sweep with RAY_AUTH_MODE=token" in out.output, \
        out.output[-3000:]
    assert "Traceback" not in out.output and not [r for r in train_runs(tracking_uri) if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_a_remote_tasks_progress_moves_the_sweeps_bar_while_it_trains(tracking_uri, tmp_path):
    """One task, two members of 5 epochs, each step asleep 10 ms (about 4 s): its results alone would move the bar
    from 0 to 5 and 10 member-epochs; its reports (every tracking.heartbeat_s, here 1 s) show counts between."""
    out = ablate("model=custom", "model.target=tests.user_models.Slow", "seed=0,1", "data=digits", "trainer.epochs=5",
                 "trainer.device=cpu", *LEASES, "hydra/launcher=population_submitit_local", cwd=tmp_path)
    assert out.returncode == 0, out.output[-3000:]
    shown = [int(n) for n, total in re.findall(r"\| *(\d+)/(\d+) \[", out.output) if total == "10"]
    assert set(shown) - {0, 5, 10} and shown[-1] == 10, shown
    assert shown == sorted(shown), shown  # never back
    [parent] = train_runs(tracking_uri, kind="sweep")
    assert not [tag for tag in parent.data.tags if tag.startswith("ablate.task_epochs.")]  # cleared at the end


def test_data_a_worker_could_not_read_fails_the_sweep_before_any_task_starts(tracking_uri, tmp_path):
    """The plan reads the data before any task is sent: a missing file is one line, nothing recorded, no task."""
    ran = ablate_cli("-m", "seed=0,1", "data.path=missing.csv", "trainer.epochs=1", "trainer.device=cpu",
                     "hydra/launcher=population_submitit_local")
    assert ran.code == 2 and "error: Data file missing.csv does not exist" in ran.err
    assert not train_runs(tracking_uri) and not list(tmp_path.rglob("*.submitit"))


# ------------------------------------------------------------------ a shared MLflow server on PostgreSQL


def test_a_server_whose_database_cannot_be_reached_says_so_in_one_line(tmp_path):
    port = free_port()
    ran = ablate_cli("server", "--db", f"postgresql://postgres:secret@127.0.0.1:{port}/mlflow")
    assert ran.code == 2 and "Traceback" not in ran.text
    assert f"error: cannot reach PostgreSQL for postgresql://postgres:***@127.0.0.1:{port}/mlflow" in ran.err
    assert "Connection refused" in ran.err and "secret" not in ran.text


@pytest.mark.slow
def test_make_server_with_auth_refuses_requests_without_credentials(tmp_path):
    password = "admin-" + uuid.uuid4().hex
    (tmp_path / "auth.ini").write_text(  # MLflow's users live in this test's folder, not the working directory
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path}/basic_auth.db\n"
        "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
           "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini")}
    with serving(f"sqlite:///{tmp_path}/mlflow.db", tmp_path, "--auth", env_extra=env) as url:
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(search, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(search, headers={
            "Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()})
        assert urllib.request.urlopen(request, timeout=10).status == 200


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{SECRET}@", 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgres_server):
    """The shared server on a fresh PostgreSQL database, with a password in its URL that must surface nowhere."""
    home = tmp_path_factory.mktemp("server")
    with fresh_postgres_database() as db, serving(with_password(db), home) as url:
        assert SECRET not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        yield url, home / "server.log"


@pytest.mark.slow
def test_two_sweeps_on_one_server_train_each_variant_once_even_when_one_is_killed(server, tmp_path, monkeypatch):
    url, _ = server
    experiment = f"two-{uuid.uuid4().hex[:6]}"
    grid = ("model.bn=pre,none", "model.dropout=0,0.3", "seed=0,1", "data=digits", "trainer.device=cpu",
            "hydra/launcher=population", "hydra.launcher.max_size=2", f"tracking.experiment={experiment}", *LEASES)
    env = {"MLFLOW_TRACKING_URI": url}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()

    # Two processes at once on the same grid: one is killed with SIGKILL midway, the other takes up its variants
    # once its leases go stale, and the same command started again finds nothing left to do.
    slow = (*grid, "trainer.epochs=40")
    victim, survivor = [ablate(*slow, cwd=tmp_path / d, env_extra=env, wait=False) for d in "ab"]
    with stopped_at_exit(victim, survivor):
        deadline = time.time() + 120
        while not any(r.data.tags.get("ablate.pid") == str(victim.pid) and r.info.status == "RUNNING"
                      for r in train_runs(url, experiment)):  # the victim is training
            assert time.time() < deadline and victim.poll() is None
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        assert survivor.communicate(timeout=300)[0] and survivor.returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # the same command again, in this process: nothing left to do
    monkeypatch.chdir(tmp_path / "a")
    again = ablate_cli("-m", *slow)
    assert again.code == 0 and "continuing sweep" in again.text, again.text[-3000:]
    runs = train_runs(url, experiment)
    assert_each_variant_finished_once(runs, 8)
    assert any(r.info.status == "KILLED" and r.data.tags["ablate.pid"] == str(victim.pid) for r in runs)


@pytest.mark.slow
def test_a_search_with_two_workers_and_a_sweep_share_the_server_and_no_password_leaks(server, tmp_path):
    url, server_log = server
    experiment, study = f"mixed-{uuid.uuid4().hex[:6]}", f"study-{uuid.uuid4().hex[:6]}"
    env = {"MLFLOW_TRACKING_URI": url}
    with fresh_postgres_database("ablate_optuna") as database:
        storage = with_password(database)
        env["OPTUNA_STORAGE"] = storage  # on the command line only its name: Hydra's files record that, not the URL
        search = ("data=digits", "trainer.device=cpu", "trainer.epochs=2", "search.final_seeds=1", "search.n_trials=4",
                  "search.batch=2", "search.pruner=none", "search.storage=${oc.env:OPTUNA_STORAGE}",
                  f"search.study={study}", f"tracking.experiment={experiment}")
        processes = [ablate(*search, f"search.finalize={i == 0}", module="ablate.search", cwd=tmp_path,
                            env_extra=env, wait=False) for i in range(2)]
        processes.append(ablate(*GRID, f"tracking.experiment={experiment}", cwd=tmp_path, env_extra=env, wait=False))
        with stopped_at_exit(*processes):
            outputs = [p.communicate(timeout=300)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], [o[-3000:] for o in outputs]
        trials = optuna.load_study(study_name=study, storage=storage).trials
        assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 4
        assert_each_variant_finished_once(train_runs(url, experiment), 4)

        # The password is in the Optuna storage URL and the server's database URL: it must be nowhere.
        client = MlflowClient(url)
        exp_id = client.get_experiment_by_name(experiment).experiment_id
        seen = list(outputs) + [server_log.read_text()]
        for run in client.search_runs([exp_id]):
            seen += [repr(run.data.params), repr(run.data.tags), run.info.run_name or ""]
            local = Path(download_artifacts(run_id=run.info.run_id, tracking_uri=url, dst_path=str(tmp_path / "dl")))
            seen += [f.read_text(errors="replace") for f in local.rglob("*") if f.is_file() and f.suffix != ".png"]
        seen += [f.read_text() for f in (tmp_path / "studies").rglob("*.yaml")]  # the exported best config
        hydra_files = [f for folder in ("outputs", "multirun") for f in (tmp_path / folder).rglob(".hydra/*.yaml")]
        assert len(hydra_files) >= 6  # config, overrides and hydra.yaml of each search process and the sweep's jobs
        seen += [f.read_text() for f in hydra_files]
        assert len(seen) > 20 and any("***" in text for text in seen)
        assert not [text for text in seen if SECRET in text]


def test_a_dead_tasks_run_already_found_dead_by_another_worker_is_still_counted_failed(tracking_uri):
    """The order the suite once hit: another worker's liveness check marks the dead task's run KILLED before the
    sweep learns the task failed; the sweep still records that run FAILED with the task's error."""
    from ablate.config import config_hash
    from ablate.execution.scale import TAG_TASK, fail_task
    from ablate.tracking.tracker import TAG_HASH, RunStatus, Tracker
    from tests.conftest import make_config

    cfg = make_config("data=digits", "trainer.epochs=1")
    tracker = Tracker(cfg.tracking)
    run = tracker.start_run("left behind", {TAG_HASH: config_hash(cfg), TAG_TASK: "task-1", "ablate.kind": "train"})
    tracker.terminate(run.run_id, RunStatus.killed, "its worker died or stopped heartbeating while RUNNING")
    [result] = fail_task(tracker, [cfg], "task-1", RuntimeError("the node was lost"), None)
    ended = MlflowClient(tracking_uri).get_run(run.run_id)
    assert (result.run_id, result.outcome.value, ended.info.status) == (run.run_id, "failed", "FAILED")
    assert ended.data.tags["ablate.error"] == "its worker task failed: RuntimeError: the node was lost"


def test_runs_on_cuda_ask_each_remote_task_for_a_gpu_and_runs_on_a_cpu_do_not():
    from ablate.config import Device
    from ablate.execution.scale import task_resources

    ray = {"remote": {"num_cpus": 1, "num_gpus": None}}
    assert task_resources("ray", ray, Device.cuda, 1.0)["remote"] == {"num_cpus": 1, "num_gpus": 1.0}
    assert task_resources("ray", ray, Device.cuda, 0.25)["remote"]["num_gpus"] == 0.25  # four populations a GPU
    assert task_resources("ray", ray, Device.cpu, 1.0)["remote"]["num_gpus"] == 0
    assert task_resources("ray", {"remote": {"num_gpus": 2}}, Device.cpu, 1.0)["remote"]["num_gpus"] == 2  # as set
    slurm = {"parameters": {"gpus_per_node": None, "cpus_per_task": 4}}
    assert task_resources("submitit", slurm, Device.cuda, 0.5)["parameters"]["gpus_per_node"] == 1
    assert task_resources("submitit", slurm, Device.cpu, 1.0)["parameters"]["gpus_per_node"] is None
    assert ray["remote"]["num_gpus"] is None  # the launcher's own settings are left as they were


def test_jobs_side_by_side_take_the_cores_once_between_them():
    from ablate.execution.scale import job_threads

    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert [job_threads({"_target_": joblib, "n_jobs": n}, 16) for n in (1, 2, 3, 16, 32, -1, -2)] == \
           [16, 8, 5, 1, 1, 1, 1]
    assert job_threads({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                        "ray": {"remote": {"num_cpus": 4}}}, 16) == 4
    assert job_threads({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                        "cpus_per_task": 2}, 16) == 2
    assert job_threads({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 16) is None
    assert job_threads({"max_size": 144, "ray": {"remote": {"num_cpus": 1}}}, 16) is None  # populations: their tasks


@pytest.mark.slow
def test_a_worker_without_the_gpu_its_task_asked_for_fails_its_runs_rather_than_train_on_a_cpu(tracking_uri, tmp_path,
                                                                                              cluster):
    """A Ray cluster told it has a GPU (so the task is scheduled) on a machine whose torch sees no CUDA device."""
    ray = on_cluster(cluster)
    out = ablate("seed=0,1", "data=digits", "trainer.epochs=1", "trainer.device=cuda", "hydra/launcher=population_ray",
                 *ray["args"], cwd=tmp_path, env_extra=ray["env"])
    first = next(line for line in out.output.splitlines() if line.startswith("plan: "))
    assert first == "plan: 2 variants in 1 population(s) of up to 2 on cuda as ray tasks, each asking for 1 GPU(s) " \
                    "and 1 CPU(s)", first
    assert out.returncode != 0 and "2 run(s) of sweep" in out.output
    runs = train_runs(tracking_uri)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    assert all("NoGPU: its task asked for a GPU (trainer.device=cuda), but this worker has no CUDA device"
               in r.data.tags["ablate.error"] for r in runs)
