"""``ablate`` and ``python -m ablate``: the command line. ``ablate [key=value ...]`` trains one variant, ``ablate -m
...`` a sweep, ``ablate <command> ...`` one of the commands below. Nothing heavy is imported before it is needed:
``ablate --help`` and ``ablate --version`` import no torch, MLflow, Optuna or pandas."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path

from ablate import paths
from ablate.cli import run_command

COMMANDS = {  # ablate <command> [args]: its module (each has a main(argv)) and what it does
    "init": ("ablate.init", "write a study of your own into a new folder: a model, its configs, a README"),
    "claims": ("ablate.claims", "judge the notes' claims (and yours) over seeds: a verdict table"),
    "report": ("ablate.report", "a sweep's report: effects with intervals, plots (the latest sweep by default)"),
    "search": ("ablate.search", "an Optuna search over conf/search's keys, trained as populations"),
    "ui": ("ablate.ui", "the MLflow UI on the runs (./mlflow.db)"),
    "server": ("ablate.server", "a shared MLflow tracking server on PostgreSQL, for a team or a cluster"),
    "dashboard": ("ablate.dashboard", "optuna-dashboard on a search's studies (studies/ablate.journal)"),
}


MODES = {"-m": "multirun", "--multirun": "multirun", "-c": "cfg", "--cfg": "cfg", "-i": "info", "--info": "info",
         "-sc": "shell", "--shell-completion": "shell"}  # Hydra's run modes: one at a time


def usage() -> str:
    """ablate's help: the commands, the common overrides with their choices (read from the configs themselves),
    examples."""
    from ablate import __version__
    from ablate.config.run import BN, Activation, Device, L2Mode
    from ablate.engine.families import families

    def options(group: str) -> str:
        found = {p.stem for folder in (paths.CONF, Path.cwd() / "conf") for p in (folder / group).glob("*.yaml")}
        return "|".join(sorted(found | (set(families()) if group == "model" else set())))

    def choices(enum) -> str:
        return "|".join(e.value for e in enum)

    me = paths.command()
    commands = "\n".join(f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items())
    return f"""ablate {__version__}: ablation studies of PyTorch networks. Trains the seed notebook's MLP (BatchNorm before
ReLU, dropout 0.3, SGD lr 0.1) on the shipped Fashion-MNIST sample and records every run in MLflow (./mlflow.db).

usage: {me} [key=value ...]          train one variant
       {me} -m key=a,b [...]         a sweep: every combination, one MLflow parent run, resumable
       {me} <command> [args ...]     a command ({me} <command> --help for its own)

commands:
{commands}

common overrides (a wrong key or value fails at once, naming what is allowed):
  model={options('model')}   model.bn={choices(BN)}   model.dropout=0.3
  model.activation={choices(Activation)}   model.init_scale=1.0   model.bn_stats=running|precise
  optim={options('optim')}   optim.lr=0.1   optim.weight_decay=1e-4   optim.l2={choices(L2Mode)}
  data={options('data')}   data.path=my.csv   data.n_classes=10
  trainer.epochs=10   trainer.batch_size=32   trainer.device={choices(Device)}   seed=42
  +experiment={options('experiment')}
  hydra/launcher=population (a sweep's variants trained together) | population_ray | population_slurm

examples:
  {me} model.bn=post model.dropout=0.1 seed=3       one variant
  {me} -m model.bn=pre,post,none seed=range(3)      a sweep of 9 runs
  {me} -m +experiment=ablation_grid hydra/launcher=population && {me} report
  {me} claims judge.seeds=10                        the notes' claims, judged
  {me} --cfg job                                    the composed config, printed (--hydra-help: Hydra's flags)
"""


def cli(argv: list[str] | None = None) -> None:
    """The ``ablate`` command."""
    argv = sys.argv[1:] if argv is None else argv
    paths.INVOKED_AS[0] = "ablate" if Path(sys.argv[0]).name == "ablate" else "python -m ablate"
    if sys.path[0] != os.getcwd():  # the ablate command, unlike python -m, would not import your modules from here
        sys.path.insert(0, os.getcwd())
    first = argv[0] if argv else ""
    if first in ("-h", "--help"):
        return print(usage())
    if first in ("-V", "--version"):
        from ablate import __version__

        return print(f"ablate {__version__}")
    if first in COMMANDS:
        return importlib.import_module(COMMANDS[first][0]).main(argv[1:])
    if first and not first.startswith(("-", "+", "~")) and "=" not in first:
        close = difflib.get_close_matches(first, COMMANDS, n=1)
        print(f"error: {first!r} is not an ablate command{f' (did you mean {close[0]}?)' if close else ''}; the "
              f"commands: {', '.join(COMMANDS)}; settings are key=value ({paths.command('--help')}).",
              file=sys.stderr)
        sys.exit(2)
    modes = [flag for flag in argv if flag in MODES]
    if len(set(map(MODES.get, modes))) > 1:  # Hydra would raise a ValueError with its traceback
        print(f"error: {' and '.join(dict.fromkeys(modes))} do not go together: give one of -m (a sweep), --cfg (the "
              f"config, printed), --info or --shell-completion ({paths.command('--help')}).", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]  # what Hydra reads
    from ablate.train import main

    run_command(main, "finished runs stay recorded and the interrupted ones are marked KILLED; the same command "
                      "resumes where this one stopped.")


if __name__ == "__main__":
    cli()
