"""Run by ``test_parallel_search.py`` under torchrun: several searches in one process group.

argv: OUT_DIR SPACE. Each rank writes ``rank<R>.json`` with what every search returned to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.search.parallel import StoppedByRankZero


def main() -> None:
    out, space = Path(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo")
    common: dict = {"evaluator": "table", "strategy": "evolution", "seed": 3, "progress": False, "threads": 1}
    report: dict = {"world": dist.get_world_size()}
    for name in ("a", "b"):  # the same search twice
        report[name] = search_job(space, None, out / f"{name}.arch", budget=24, **common).as_dict()
    search_job(space, None, out / "r.arch", budget=12, **common)  # "interrupted" after 12 ...
    report["resumed"] = search_job(space, None, out / "r.arch", budget=24, resume=True, **common).as_dict()
    try:  # a's history exists: rank 0 refuses, and the other ranks must stop, not wait
        search_job(space, None, out / "a.arch", budget=24, **common)
    except StoppedByRankZero as exc:
        report["error"] = ["stopped", str(exc)]
    except SpaceError as exc:
        report["error"] = ["refused", str(exc)]
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
