"""The documentation: the site builds without a warning, its reference pages hold every key the code has, the README
stays short, and the example notebook runs from top to bottom."""

import subprocess
import sys

import pytest

from ablate.config.identity import flatten
from tests.conftest import REPO, make_config

sys.path.insert(0, str(REPO / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the MkDocs hook that generates the reference pages)


def test_the_configuration_reference_lists_every_key_of_a_run_and_of_each_family():
    reference = hooks.config_reference()
    for family in ("mlp", "cnn"):
        for key in flatten(make_config(f"model={family}")):
            if key != "model.family" and not key.startswith("search."):
                assert f"| `{key}` |" in reference, key
    assert "| `judge.seeds` |" in reference and "| `model.bn` | optional BN | `pre` | `none` \\| `pre` \\| `post` |" in reference


def test_the_commands_reference_is_each_commands_own_help():
    text = hooks.command_help()
    for command in ("init", "claims", "report", "search", "ui", "server"):
        assert f"### ablate {command}\n" in text
    assert "powered by Hydra" not in text


def test_the_readme_is_at_most_150_lines_and_links_only_to_files_that_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    import re

    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (REPO / target).exists(), target


@pytest.mark.slow
def test_the_site_builds_strictly_with_the_example_notebook_run_top_to_bottom(tmp_path):
    """The build executes examples/seed_study.ipynb (a cell's error fails it) and shows it with its outputs."""
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").exists()
    page = (tmp_path / "site" / "notebook" / "index.html").read_text()
    assert "FINISHED" in page and "L2 shrinks the weights" in page and "SUPPORTED" in page  # the run, the claims
    assert page.count('src="data:image/png;base64,') == 1 and "<table" in page  # the plot, the sweep's table
    assert "Traceback" not in page
