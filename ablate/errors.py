"""Errors a user can act on: where in their own code a failure started, and what counts as vmap refusing a model."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path
import torch


def user_frame(err: BaseException, code: object) -> str:
    """The deepest frame of ``err``'s traceback in the file that defines ``code`` (the user's model class or data
    function) as ``file:line: the line's text``; empty where no frame lies there."""
    try:
        source = inspect.getsourcefile(code)
    except TypeError:  # defined in C, or nowhere
        return ""
    if not source:
        return ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == Path(source).resolve()]
    if not frames:
        return ""
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}: {(last.line or '').strip()}"


def vmap_refuses(err: BaseException) -> bool:
    """Whether an error from a vmapped step means "vmap cannot take this model": its own refusals (messages that
    start ``vmap:``, e.g. data-dependent control flow or ``.item()``) and operators without a batching rule. An
    out-of-memory error or a bug in the model's forward is none of these: it must fail, not hide in a fallback."""
    if not isinstance(err, RuntimeError) or isinstance(err, torch.OutOfMemoryError):
        return False
    text = str(err)
    return text.startswith("vmap:") or "atching rule not implemented" in text or "does not have a batching rule" in text
