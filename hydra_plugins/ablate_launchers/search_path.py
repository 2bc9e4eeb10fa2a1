"""A project of your own: the working directory's ``conf/`` joins ablate's configs on Hydra's search path, so its
groups merge with the package's (``model=my_net``, ``claims=[notes,mine]``, ``+experiment=my_grid``) without
touching the package. Hydra finds this plugin under ``hydra_plugins``; it changes nothing where there is no
``conf/`` or where it is ablate's own (a checkout's top)."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class ProjectSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from ablate.paths import CONF

        mine = Path.cwd() / "conf"
        if mine.is_dir() and mine.resolve() != CONF.resolve():
            search_path.append(provider="ablate-project", path=f"file://{mine.resolve()}")
