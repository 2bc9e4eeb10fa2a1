"""MkDocs hook: the reference pages are generated from the code, so they cannot drift from it.

``<!-- config-reference -->`` in a page becomes a table per config section, read from the typed dataclasses
(``ablate/config/``, the model families): every key with its type, default, allowed values and the comment that
documents it where it is declared. ``<!-- command-help -->`` becomes each command's own ``--help``.
``<!-- notebook: examples/x.ipynb -->`` becomes that notebook, executed now (a fresh MLflow store in a temporary
folder; a cell's error fails the build), with its outputs: text, tables and plots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import io
import os
import re
import tempfile
import typing
from pathlib import Path

MISSING = "???"


def field_comments(cls: type) -> dict[str, str]:
    """Each field's documenting comment: the comment lines just above it and the one at its end, joined."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        above: list[str] = []
        for line in inspect.getsource(klass).splitlines()[1:]:
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("# "))
                continue
            found = re.match(r"(\w+): [^#]*?(?:#\s*(.*))?$", text)
            if found and not text.startswith(("def ", "return", "require")):
                docs[found.group(1)] = " ".join([*above, found.group(2) or ""]).strip()
            above = []
    return docs


def _type_text(kind: typing.Any) -> str:
    text = getattr(kind, "__name__", None) if not typing.get_args(kind) else None
    if text is None:
        text = str(kind).replace("typing.", "")
        text = re.sub(r"ablate\.[\w.]+\.(\w+)", r"\1", text)
        text = re.sub(r"<enum '(\w+)'>|<class '(?:[\w.]+\.)?(\w+)'>", lambda m: m.group(1) or m.group(2), text)
    return f"optional {text[len('Optional['):-1]}" if text.startswith("Optional[") else text


def _allowed(kind: typing.Any) -> str:
    for arg in (kind, *typing.get_args(kind)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return " \\| ".join(f"`{e.value}`" for e in arg)
    return ""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if value == MISSING:
        return "(set by its group's option)"
    if isinstance(value, enum.Enum):
        value = value.value
    if dataclasses.is_dataclass(value):
        return ""
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def config_rows(cls: type, prefix: str) -> list[str]:
    """``| key | type | default | allowed | what it is |`` for every field of ``cls``, nested dataclasses dotted."""
    hints, docs, rows = typing.get_type_hints(cls), field_comments(cls), []
    for f in dataclasses.fields(cls):
        kind, key = hints[f.name], f"{prefix}{f.name}"
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            rows.extend(config_rows(kind, f"{key}."))
            continue
        role = (f.metadata.get("ablate") or "").replace("_", " ")
        text = docs.get(f.name, "") + (f" *({role})*" if role else "")
        rows.append(f"| `{key}` | {_type_text(kind)} | {_default(f)} | {_allowed(kind)} | {text.strip()} |")
    return rows


def config_sections() -> list[tuple[str, str, type]]:
    """(title, key prefix, dataclass) for every section a user sets."""
    from ablate.config.commands import JudgeSettings, ReportConfig, UIConfig
    from ablate.config.launch import LauncherSettings
    from ablate.config.run import DataConfig, OptimConfig, RunConfig, SeedSources, TrackingConfig, TrainerConfig
    from ablate.config.search_space import SearchConfig
    from ablate.engine.families import families

    sections = [("Top level", "", RunConfig), ("seeds", "seeds.", SeedSources), ("data", "data.", DataConfig),
                ("optim", "optim.", OptimConfig),
                ("trainer", "trainer.", TrainerConfig), ("tracking", "tracking.", TrackingConfig)]
    sections += [(f"model={name}", "model.", family.config) for name, family in sorted(families().items())]
    return sections + [("search (ablate search)", "search.", SearchConfig),
                       ("hydra.launcher (hydra/launcher=population)", "hydra.launcher.", LauncherSettings),
                       ("judge (ablate claims)", "judge.", JudgeSettings), ("ablate report", "", ReportConfig),
                       ("ablate ui", "", UIConfig)]


def config_reference() -> str:
    header = "| key | type | default | allowed values | what it is |\n|---|---|---|---|---|"
    out = []
    for title, prefix, cls in config_sections():
        rows = config_rows(cls, prefix)
        if title == "Top level":
            rows = [r for r in rows if re.match(r"\| `(seed|force|experiment_name)` ", r)]
        out.append(f"### {title}\n\n{header}\n" + "\n".join(rows))
    return "\n\n".join(out)


def command_help() -> str:
    """Each command's ``--help``, as ablate prints it."""
    from ablate.__main__ import COMMANDS, usage

    out = [f"### ablate\n\n```text\n{usage().rstrip()}\n```"]
    for name, (module, _) in COMMANDS.items():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
            __import__(module, fromlist=["main"]).main(["--help"])
        out.append(f"### ablate {name}\n\n```text\n{printed.getvalue().rstrip()}\n```")
    return "\n\n".join(out)


ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = re.compile(r"<!-- notebook: (\S+) -->")


def executed(path: Path):
    """The notebook run top to bottom in a temporary folder, its runs in a fresh store there."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"  # never the reader's own store
        try:
            NotebookClient(notebook, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": folder}}).execute()
        finally:
            os.environ.pop("MLFLOW_TRACKING_URI") if before is None else os.environ.update(MLFLOW_TRACKING_URI=before)
    return notebook


ANSI = re.compile(r"\x1b\[[0-9;]*m")
BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")  # a tqdm bar's state


def printed(texts: list[str]) -> str:
    """A cell's stdout and stderr as its reader saw them at the end: a progress bar's last state only."""
    lines = [line for line in re.split(r"[\r\n]", ANSI.sub("", "".join(texts))) if line.strip()]
    bars = [i for i, line in enumerate(lines) if BAR.search(line)]
    return "\n".join(line for i, line in enumerate(lines) if i not in bars[:-1])


def shown(output: dict) -> str:
    """A result as the page shows it: a plot inline, a table as its HTML, else its text."""
    data = output.get("data", {})
    if "image/png" in data:
        return f'<img alt="a plot" src="data:image/png;base64,{data["image/png"].strip()}">'
    if "text/html" in data:
        return f'<div markdown="0">{data["text/html"]}</div>'
    return "```text\n" + data["text/plain"] + "\n```" if "text/plain" in data else ""


def notebook_page(path: Path) -> str:
    parts = [f"*Executed when these pages were built, from [`{path.relative_to(ROOT)}`]"
             f"(https://github.com/ablate-dev/ablate/blob/main/{path.relative_to(ROOT)}).*"]
    for cell in executed(path).cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
        elif cell.cell_type == "code":
            parts.append(f"```python\n{cell.source}\n```")
            streams = [o["text"] for o in cell.outputs if o["output_type"] == "stream"]
            if streams:
                parts.append("```text\n" + printed(streams) + "\n```")
            parts += [shown(o) for o in cell.outputs if o["output_type"] != "stream"]
    return "\n\n".join(part for part in parts if part)


def on_page_markdown(markdown: str, **_: typing.Any) -> str:
    markdown = NOTEBOOK.sub(lambda found: notebook_page(ROOT / found.group(1)), markdown)
    if "<!-- config-reference -->" in markdown:
        markdown = markdown.replace("<!-- config-reference -->", config_reference())
    if "<!-- command-help -->" in markdown:
        markdown = markdown.replace("<!-- command-help -->", command_help())
    return markdown
