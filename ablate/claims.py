"""``ablate claims [key=value ...]``: the claims in conf/claims/ (the seed notes' and your own), each judged by an
experiment stated in advance: both arms trained over ``judge.seeds`` seeds in every context of ``judge.contexts``
(a resumable sweep, as populations), compared seed by seed, the family of tests corrected for multiplicity. The
verdict tables go to reports/claims.md and the sweep's MLflow run.

  ablate claims judge.seeds=10 'claims=[notes]' model=cnn
  ablate claims judge.seeds=auto        seeds in rounds, each claim until its anytime-valid sequence settles it
  settings: conf/judge.yaml; a claim's keys: text, a, b, metric, direction, minimal_effect (conf/claims/*.yaml)
"""

from __future__ import annotations

import sys


def judge_command(argv: list[str], quiet: bool = False) -> str:
    """conf/judge.yaml composed with the overrides, its claims judged; returns the verdict tables."""
    from ablate.config.adapter import typed_object
    from ablate.execution.claims import judge_claims
    from ablate.execution.compose import ComposeCache, compose, composing

    with composing() as loader:
        cfg = typed_object(compose("judge", argv))
        cache = ComposeCache(lambda groups: compose("config", groups), loader)
        return judge_claims(cfg, argv, cache, quiet)


def main(argv: list[str]) -> None:
    from ablate.cli import run_command, settings_help, wants_help

    if wants_help(argv):
        from ablate.config.commands import JudgeSettings

        return print(__doc__ + "\njudge settings:\n" + "\n".join(settings_help(JudgeSettings, "judge.")))
    run_command(lambda: judge_command(argv), "finished runs stay recorded and the interrupted ones are marked KILLED; "
                                             "the same command resumes.")


if __name__ == "__main__":
    main(sys.argv[1:])
