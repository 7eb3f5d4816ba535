"""Where training and search send their scalars: a JSON-lines file, TensorBoard, or both.

The loops call a ``MetricsSink`` and do not know which; ``--tensorboard DIR`` gives a
TensorBoard one (``torch.utils.tensorboard``, the optional ``tensorboard`` extra), and any
object with these three methods works from the Python API. Steps are the natural counter
of the loop: optimizer steps in training, evaluations in search, so curves of a resumed run
continue where the first part stopped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trionet_dsl.lang.errors import SpaceError


@runtime_checkable
class MetricsSink(Protocol):
    def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
        """Log ``values`` as ``prefix/name`` at ``step``."""
        ...

    def text(self, tag: str, step: int, text: str) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per call, appended and flushed: ``{"prefix", "step", ...values}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = self.path.open("a", encoding="utf-8")

    def _write(self, rec: dict[str, Any]) -> None:
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()

    def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
        self._write({"prefix": prefix, "step": step, **{k: float(v) for k, v in values.items()}})

    def text(self, tag: str, step: int, text: str) -> None:
        self._write({"prefix": tag, "step": step, "text": text})

    def close(self) -> None:
        self.fh.close()


def require_tensorboard() -> None:
    """Refuse ``--tensorboard`` in one line when the extra is not installed (before any work)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:  # torch.utils.tensorboard would fail with a traceback
        raise SpaceError("--tensorboard needs the 'tensorboard' package", hint="pip install 'trionet-dsl[tensorboard]'")


class TensorBoardSink:
    """Scalars and text into a TensorBoard log folder (event files; view with ``tensorboard --logdir``)."""

    def __init__(self, log_dir: str | Path) -> None:
        require_tensorboard()
        path = Path(log_dir)
        if path.exists() and not path.is_dir():
            raise SpaceError(f"--tensorboard {path} is a file, not a folder", file=str(path), hint="give a folder")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(path))

    def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), step)
        self.writer.flush()

    def text(self, tag: str, step: int, text: str) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_sink(log_dir: str | Path | None) -> TensorBoardSink | None:
    """The sink of ``--tensorboard DIR`` (None without it)."""
    return None if log_dir is None else TensorBoardSink(log_dir)


def closing(sink: MetricsSink | None) -> contextlib.AbstractContextManager[object]:
    """A ``with`` that closes ``sink`` (nothing for None): the loops hold it beside their progress bar."""
    return contextlib.nullcontext() if sink is None else contextlib.closing(sink)
