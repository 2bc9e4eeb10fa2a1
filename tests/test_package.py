"""The wheel is the product: built from this checkout, installed into a fresh virtual environment that sees this
one's packages (no download), and used from an empty folder as a user would: the default job, a sweep, ``ablate
init`` and a run of its model, the claims, a report and the Python API."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from tests.conftest import ONLY_DIGITS, REPO


def sh(*args, cwd, env, timeout=300):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, args))}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh environment's bin folder, an environment for subprocesses that finds only what it installed)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    source = root / "source"  # a copy: the build writes its build/ folder beside the sources, not into the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                "mlflow.db", "mlartifacts", "outputs", "multirun",
                                                                "reports", "fashion-mnist"))
    sh(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w",
       str(root / "dist"), cwd=root, env=env)
    [wheel] = (root / "dist").glob("ablate-*.whl")
    sh(getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(root / "venv"), cwd=root,
       env=env)
    site = root / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this environment's packages, after its own
    bin_dir = root / "venv" / "bin"
    sh(bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), cwd=root, env=env)
    return bin_dir, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "WHEEL": str(wheel)}


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["postgres", "server", "ray", "slurm"])
def test_each_extra_resolves(installed, extra, tmp_path):
    bin_dir, env = installed
    out = sh(bin_dir / "python", "-m", "pip", "install", "--dry-run", "--no-index", f"ablate[{extra}] @ file://{env['WHEEL']}",
             cwd=tmp_path, env=env)
    assert "Would install ablate-0.1.0" in out or "Requirement already satisfied" in out


def test_the_wheel_holds_every_module_config_and_data_file_of_the_tree_and_nothing_else(installed):
    """The package list in pyproject.toml, checked against the tree: a new module or config file is in the wheel."""
    import zipfile

    _, env = installed
    inside = {name for name in zipfile.ZipFile(env["WHEEL"]).namelist() if ".dist-info/" not in name}
    expected = {str(p.relative_to(REPO)) for folder in ("ablate", "hydra_plugins") for p in (REPO / folder).rglob("*")
                if p.suffix in (".py", ".typed") and "__pycache__" not in p.parts}
    expected |= {f"ablate/_shipped/{p.relative_to(REPO)}" for p in (REPO / "conf").rglob("*.yaml")}
    expected |= {"ablate/_shipped/data/fmnist_small.csv.gz", "ablate/_shipped/data/README.md"}
    assert inside == expected


@pytest.mark.slow
def test_the_installed_wheel_runs_from_an_empty_folder(installed, tmp_path):
    bin_dir, env = installed
    where = sh(bin_dir / "python", "-c", "import ablate; print(ablate.__file__)", cwd=tmp_path, env=env)
    assert where.strip().startswith(str(bin_dir.parent)) and "_shipped" not in where  # the wheel's, not the checkout's
    out = sh("ablate", "trainer.epochs=1", cwd=tmp_path, env=env)  # the shipped default data
    assert "4200 train / 600 val / 1200 test samples of shape [1, 28, 28]" in out and "FINISHED in" in out
    assert "look at it: ablate ui" in out and (tmp_path / "mlflow.db").exists()  # hints name the command as invoked
    out = sh("ablate", "-m", "model.bn=pre,post,none", "trainer.epochs=1", "data=digits", cwd=tmp_path, env=env)
    assert "3 FINISHED runs" in out and "report: ablate report sweep=" in out
    out = sh("ablate", "report", cwd=tmp_path, env=env)
    assert "written: reports/" in out and list((tmp_path / "reports").glob("sweep-*/report.md"))


@pytest.mark.slow
def test_ablate_init_makes_a_project_whose_model_claims_and_grid_run_and_the_python_api_works(installed, tmp_path):
    bin_dir, env = installed
    out = sh("ablate", "init", "study", cwd=tmp_path, env=env)
    assert "wrote models.py" in out
    study = tmp_path / "study"
    out = sh("ablate", "-m", "model=my_net", "model.bn=pre,none", "trainer.epochs=1", "data=digits",
             "hydra/launcher=population_ray", "hydra.launcher.ray.init.num_cpus=2", cwd=study, env=env)
    assert "2 FINISHED runs" in out and "as ray tasks, each asking for 0 GPU(s)" in out  # workers import models.py
    out = sh("ablate", "claims", "model=my_net", "claims=[mine]", "judge.seeds=3", "trainer.epochs=1",
             "judge.bootstrap=200", *ONLY_DIGITS, cwd=study, env=env)
    assert "| A wider MyNet reaches a higher validation accuracy |" in out
    (study / "notebook.py").write_text(textwrap.dedent('''
        import ablate
        result = ablate.run("model=my_net", "data=digits", "trainer.epochs=1", "seed=7")
        print("run", result.outcome.value, result.metrics["test_acc"])
        grid = ["+experiment=my_grid", "model.bn=pre", "seed=0", "data=digits", "trainer.epochs=1"]
        sweep_id = ablate.sweep(grid)
        frame = ablate.runs(sweep_id)
        print("rows", len(frame), sorted(frame["model.dropout"]))
        print("again", ablate.sweep(grid) == sweep_id, len(ablate.runs(sweep_id)))
    '''))
    out = sh(bin_dir / "python", "notebook.py", cwd=study, env=env)
    assert "run finished" in out and "rows 2 [0.0, 0.3]" in out and "again True 2" in out
