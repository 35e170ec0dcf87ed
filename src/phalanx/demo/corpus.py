"""Training text that ships with Python itself: the docstrings of stdlib modules.

No download, no data file to keep: every Python installation has these, and
they are real English prose about programming, which a character model can
learn visibly in a few dozen steps.
"""

from __future__ import annotations

import importlib

import torch
from torch.utils.data import Dataset

_MODULES = (
    "this",
    "json",
    "textwrap",
    "collections",
    "functools",
    "itertools",
    "pathlib",
    "argparse",
    "logging",
    "subprocess",
    "threading",
    "random",
    "statistics",
    "string",
    "re",
    "csv",
    "heapq",
    "bisect",
    "contextlib",
    "dataclasses",
    "enum",
    "typing",
    "unittest",
    "shutil",
    "tempfile",
)


def stdlib_text(min_chars: int = 40_000) -> str:
    parts = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name) if name != "this" else None
        except ImportError:
            continue
        doc = module.__doc__ if module is not None else None
        if doc:
            parts.append(doc.strip())
        for attr in sorted(dir(module)) if module is not None else []:
            obj = getattr(module, attr, None)
            text = getattr(obj, "__doc__", None)
            if isinstance(text, str) and len(text) > 200 and not attr.startswith("_"):
                parts.append(text.strip())
        if sum(map(len, parts)) >= min_chars:
            break
    return "\n\n".join(parts)


class CharDataset(Dataset):
    """Windows of `context + 1` characters; sample i starts at character i * stride."""

    def __init__(self, text: str, context: int, stride: int) -> None:
        self.chars = sorted(set(text))
        lookup = {c: i for i, c in enumerate(self.chars)}
        self.data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
        self.context = context
        self.stride = stride

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return (len(self.data) - self.context - 1) // self.stride

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.stride
        window = self.data[start : start + self.context + 1]
        return window[:-1], window[1:]
