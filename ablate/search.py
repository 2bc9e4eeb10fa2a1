"""``ablate search [key=value ...]``: an Optuna search over the keys declared in ``search.space`` (conf/search/),
each round's trials trained as one population, pruned epoch by epoch, the best retrained with ``search.final_seeds``
seeds and tested once. The same config groups as ``ablate``; ``make search WORKERS=4`` runs four workers on one
study (a journal file, or PostgreSQL with ``search.storage``).

  ablate search search.n_trials=30 model=cnn
"""

from __future__ import annotations

import sys


def task(config) -> None:
    from ablate.cli import user_errors_end_the_command
    from ablate.config.adapter import to_run_config
    from ablate.execution.search import run_search

    with user_errors_end_the_command():  # here, not as Hydra reports a job's error (a line more)
        run_search(to_run_config(config))


def main(argv: list[str]) -> None:
    from ablate.cli import run_command, settings_help, wants_help

    if wants_help(argv):
        from ablate.config.search_space import SearchConfig

        return print(__doc__ + "\nsearch settings:\n" + "\n".join(settings_help(SearchConfig, "search.")))

    def search() -> None:
        import hydra
        import optuna

        from ablate.paths import CONF
        from ablate.execution.compose import register_configs

        register_configs()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sys.argv = [sys.argv[0], *argv]  # what Hydra reads
        hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")(task)()

    run_command(search, "finished trials stay in the study and the interrupted ones are marked FAIL when a worker "
                        "next starts; the same command resumes the study.")


if __name__ == "__main__":
    main(sys.argv[1:])
