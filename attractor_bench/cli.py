"""The `attractor-bench` command line. This is the one place where domain errors become
messages and exit codes: 2 for usage/configuration errors, 1 for other failures (missing data,
an unwritable or full folder), 130 for Ctrl-C and 143 for SIGTERM (both end a run the same way:
the finished cells stay in the cache, no result file is written).

It is also the one module that imports inside functions: each command imports what it needs when
it runs, so that `--help`, `--version` and `schema` start without torch, ART, pandas or matplotlib
(tests/test_architecture.py allows it here only; tests/test_cli.py checks what `--help` loads)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import typer
from rich.console import Console
from rich.table import Table

from . import __version__, suitefile
from .errors import AttractorBenchError, ConfigError
from .tables import fmt_eps, pct, terminal

app = typer.Typer(help="Adversarial-robustness benchmark of the attractor network and its defences, on ART.",
                  epilog="Example: attractor-bench run suites/mnist_fgsm.yaml --data-root ../shared/datasets",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True, soft_wrap=True)  # a message is one line, so a path in it can be copied
out = Console(soft_wrap=True)

DataRoot = Annotated[Path | None, typer.Option("--data-root", envvar="ATTRACTOR_BENCH_DATA",
                     help="Folder with the datasets in torchvision's layout (MNIST/raw, FashionMNIST/raw, cifar-10-batches-py).")]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", envvar="ATTRACTOR_BENCH_CACHE",
                     help="Where trained models and finished cells are stored (default ~/.cache/attractor-bench).")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
ResultsDir = Annotated[Path, typer.Option("--results-dir", help="Results go to RESULTS_DIR/<suite name>/.")]
Download = Annotated[bool, typer.Option("--download/--no-download", help="Download missing datasets (needs network).")]
ShowProgress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise _Terminated()


_HINTS = {errno.ENOSPC: "The disk is full: free space, or point --results-dir / --cache-dir (ATTRACTOR_BENCH_CACHE) "
                        "at another disk.",
          errno.EDQUOT: "The disk quota is used up: free space, or point --results-dir / --cache-dir elsewhere."}


def _storage_message(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    hint = _HINTS.get(e.errno, "Check that the folder exists and is writable, or choose another with --results-dir / "
                               "--cache-dir (ATTRACTOR_BENCH_CACHE).")
    return f"Could not write or read{where}: {e.strerror or e}. {hint}"


@contextmanager
def _errors(debug: bool, report: Callable[[str], None] | None = None) -> Iterator[None]:
    """Domain errors and storage errors as one line on stderr and an exit code; `report` also gets
    the message (a command's --json output)."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        yield
    except AttractorBenchError as e:
        if debug:
            raise
        _fail(str(e), e.exit_code, report)
    except OSError as e:  # a full disk, a read-only or vanished folder: what the user can fix, once
        if debug:
            raise
        _fail(_storage_message(e), 1, report)
    except KeyboardInterrupt as e:
        how = "Terminated (SIGTERM)" if isinstance(e, _Terminated) else "Interrupted"
        err.print(f"[yellow]{how}: no result files were written. What was finished is kept (the cells in the cell "
                  "store, a training in progress at its last saved epoch); run the same command again to resume from it.[/]")
        raise typer.Exit(143 if isinstance(e, _Terminated) else 130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(message: str, code: int, report: Callable[[str], None] | None) -> None:
    if report is not None:
        report(message)
    err.print(f"[bold red]Error:[/] {message}", highlight=False)
    raise typer.Exit(code) from None


def _print_json(doc: Any) -> None:
    """Machine-readable output: JSON on stdout, nothing else there."""
    typer.echo(json.dumps(doc, indent=2, default=str))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


NoPlugins = Annotated[bool, typer.Option("--no-plugins", help="Refuse a suite that names 'module:callable' references "
                                         "(outside code that would be imported).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attractor-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False) -> None:
    """The options before a command."""


def _announce_plugins(suite: Path, no_plugins: bool, imported: bool = True) -> None:
    """Say which modules a suite will import, before importing them (a suite file is code)."""
    refs = suitefile.references(suitefile.read(suite))
    if not refs:
        return
    modules = ", ".join(dict.fromkeys(r.partition(":")[0] for r in refs))
    if no_plugins:
        raise ConfigError(f"{suite}: names outside code ({', '.join(refs)}); --no-plugins refuses suites that import "
                          "code. Run without --no-plugins if you trust these modules.")
    checks = ("Their signatures and a dry run of each on two images are checked before any training." if imported else
              "Their signatures and dry runs need the import: they are checked by validate --import-plugins and at the "
              "start of run.")
    err.print(f"[yellow]{suite} names outside code:[/] {'importing' if imported else 'looking up (not importing)'} "
              f"module(s) {modules} for {', '.join(refs)}. A suite file is code: run only suites you trust "
              f"(--no-plugins refuses such suites). {checks}", highlight=False)


def _check_folders(results_dir: Path | None, cache_dir: Path | None) -> None:
    """Before any work: the results (unless None) and cache folders must be writable (or creatable)."""
    from .cache import resolve_cache_dir
    from .files import check_writable

    folders = (("results folder", results_dir), ("cache folder", resolve_cache_dir(cache_dir)))
    for what, folder in ((w, f) for w, f in folders if f is not None):
        try:
            check_writable(folder)
        except OSError as e:
            raise ConfigError(f"The {what} {folder} is not writable ({e.strerror or e}). Choose another with "
                              f"{'--results-dir' if what.startswith('results') else '--cache-dir or ATTRACTOR_BENCH_CACHE'}.")


def _cap_workers(workers: int) -> int:
    cores = os.cpu_count() or 1
    if workers > cores:
        err.print(f"--workers {workers} capped to {cores}, this machine's cores (each worker is a process holding the "
                  "models, ~0.5-1 GB).", highlight=False)
        return cores
    return workers


def _summary(result) -> Table:
    """Clean and worst-case accuracy per model, norm and eps, with the reliability verdict at that
    (norm, eps) (from the run's summary records, as summary.json holds them)."""
    from .summary import summarize

    rows = []
    words = {True: "[bold red]potentially unreliable[/]", False: "reliable", None: "not checked"}
    for m in summarize(result)["models"]:
        v = m["verdict"]
        at = {(e["norm"], e["eps"]): e["potentially_unreliable"] for e in v.get("by_eps", [])}
        c = m["clean"]
        rows.append([m["name"], "clean", "0", str(c["n"]), _acc(c["accuracy"], c["end_to_end_accuracy"]),
                     words[v["potentially_unreliable"]]])
        for w in m["worst_case"]:
            here = at.get((w["norm"], w["eps"]), v["potentially_unreliable"] if not at else None)
            rows.append([m["name"], w["norm"] + (", all images" if w["all_images"] else ""), fmt_eps(w["eps"], w["norm"]),
                         str(w["n"]), _acc(w["accuracy"], w["end_to_end_accuracy"]), words[here]])
    return terminal(f"{result.suite.name}: defended MNIST accuracy, worst case over the attacks per sample, % "
                    "(accuracy / end-to-end with rejection)", ["model", "attack", "eps", "n", "accuracy / end-to-end", "verdict"],
                    rows, right={"accuracy / end-to-end"})


def _command(name: str, suite: Path, results_dir: Path, data_root: Path | None, device: str | None) -> str:
    """The command line a results folder records (the options that change what it holds)."""
    return " ".join(shlex.quote(str(a)) for a in ["attractor-bench", name, suite]
                    + (["--results-dir", results_dir] if results_dir != Path("results") else [])
                    + (["--data-root", data_root] if data_root else [])
                    + (["--device", device] if device else []))


def _acc(accuracy: float, end_to_end: float | None) -> str:
    return f"{pct(accuracy)} / {pct(end_to_end, missing='no rejector')}"


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="Suite YAML file, e.g. suites/mnist_fgsm.yaml.")],
    results_dir: ResultsDir = Path("results"),
    data_root: DataRoot = None,
    cache_dir: CacheDir = None,
    download: Download = True,
    progress: ShowProgress = True,
    fresh: Annotated[bool, typer.Option("--fresh", help="Recompute every cell instead of resuming from the cells stored "
                                        "by earlier runs (trained models are still reused).")] = False,
    device: Annotated[str | None, typer.Option("--device", metavar="auto|cpu|cuda[:i]",
                      help="Where training and attacks run (default: the suite's `device`, else auto = CUDA when present). "
                           "Cells are stored per device kind: CPU and CUDA numbers are not mixed.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Compute the cells in N local worker processes "
                                         "(models are trained once, here). The tables equal the sequential run's.")] = 1,
    cluster: Annotated[str | None, typer.Option("--cluster", metavar="ADDRESS|local",
                       help="Compute the cells on a Dask cluster: a scheduler address (tcp://host:8786), or `local` for a "
                            "local Dask cluster of --workers processes. Needs pip install -e '.\\[distributed]'. The "
                            "scheduler and every worker can run code in this process: use only a cluster you trust.")] = None,
    no_plugins: NoPlugins = False,
    debug: Debug = False,
) -> None:
    """Train (or load from the cache) the suite's models, run its attacks, write result tables.

    Every finished (model, attack, eps, dataset) cell is stored in the cache as soon as it is done,
    so a run that was interrupted or killed resumes where it stopped when started again, and
    gives the same tables as an uninterrupted run."""
    from . import plugins
    from .config import load_suite
    from .report import write_results
    from .runner import run_suite
    from .summary import summarize

    with _errors(debug):
        _announce_plugins(suite, no_plugins)
        with plugins.references("refuse" if no_plugins else "import"):
            spec = load_suite(suite)  # validate before any work
        _check_folders(results_dir, cache_dir)
        workers = _cap_workers(workers)
        result = run_suite(spec, data_root=data_root, cache_dir=cache_dir, download=download, console=err, progress=progress,
                           fresh=fresh, device=device, workers=workers if workers > 1 or not cluster else 2, cluster=cluster)
        folder = write_results(result, results_dir, _command("run", suite, results_dir, data_root, device))
        out.print(_summary(result))
        for m in summarize(result)["models"]:
            why = m["verdict"]["reasons"]
            for w in why[:3]:
                out.print(f"[yellow]indicator[/] {m['name']}: {w}.", highlight=False)
            if len(why) > 3:
                out.print(f"[yellow]indicator[/] {m['name']}: and {len(why) - 3} more ({folder}/README.md, "
                          "'Reliability verdict').", highlight=False)
        cells = result.meta["cells"]
        if cells["from_store"]:
            out.print(f"Resumed: {cells['from_store']} of {cells['total']} cells came from the store, {cells['computed']} were "
                      "computed (--fresh recomputes them all).", highlight=False)
        if cells.get("failed_verification"):
            out.print(f"[yellow]{cells['failed_verification']} stored cells failed verification[/] (damaged or edited: "
                      "checksum, layout or schema) and were computed again.", highlight=False)
        out.print(f"Wrote {folder}/results.csv, robust_flags.json, summary.json, README.md, run.json ({result.meta['wall_seconds']:.0f} s).")


@app.command()
def train(
    suites: Annotated[list[Path], typer.Argument(help="Suite YAML files, e.g. suites/leaderboard.yaml suites/mnist_fgsm.yaml.")],
    data_root: DataRoot = None,
    cache_dir: CacheDir = None,
    download: Download = True,
    progress: ShowProgress = True,
    device: Annotated[str | None, typer.Option("--device", metavar="auto|cpu|cuda[:i]",
                      help="Where training runs (default: the suite's `device`, else auto = CUDA when present).")] = None,
    no_plugins: NoPlugins = False,
    debug: Debug = False,
) -> None:
    """Train every model of the suites (and their defences' networks) into the cache, and nothing
    else: `run` then starts from trained models.

    A training saves its state as it goes (after an epoch, at most every 30 s): interrupted (Ctrl-C,
    SIGTERM, a kill), the same command continues it, to the same weights as an uninterrupted one.
    Every suite is checked before any training."""
    from . import plugins
    from .config import load_suite
    from .preparation import train_suite

    with _errors(debug):
        for s in suites:
            _announce_plugins(s, no_plugins)
        with plugins.references("refuse" if no_plugins else "import"):
            specs = [load_suite(s) for s in suites]  # every suite valid before any training
        _check_folders(None, cache_dir)
        for spec in specs:
            t0 = time.perf_counter()
            models = train_suite(spec, data_root=data_root, cache_dir=cache_dir, download=download, console=err,
                                 progress=progress, device=device)
            trained = [n for n, m in models.items() if not m.get("from_cache")]
            zoo = [n for n, m in models.items() if m.get("from_zoo")]  # a cache hit served by zoo/ (SHA-256 checked)
            out.print(f"{spec.name}: {len(models)} models ready ({len(trained)} trained now"
                      f"{': ' + ', '.join(trained) if trained else ''}"
                      f"{f'; {len(zoo)} from the zoo: ' + ', '.join(zoo) if zoo else ''}) in {time.perf_counter() - t0:.0f} s.",
                      highlight=False)


@app.command()
def ood(
    suite: Annotated[Path, typer.Argument(help="OOD suite YAML file, e.g. suites/ood.yaml (see attractor_bench/ood/suite.py).")],
    results_dir: ResultsDir = Path("results"),
    data_root: DataRoot = None,
    cache_dir: CacheDir = None,
    download: Download = True,
    progress: ShowProgress = True,
    device: Annotated[str | None, typer.Option("--device", metavar="auto|cpu|cuda[:i]",
                      help="Where training and attacks run (default auto: CUDA when present).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Compute the cells in N local worker processes "
                                         "(models are trained once, here). The tables equal the sequential run's.")] = 1,
    debug: Debug = False,
) -> None:
    """OOD detection under attack: every model of the suites the OOD suite names, with every rejector it
    can have (reconstruction similarity, max softmax, energy), clean and under score attacks (PGD, APGD,
    Square) in both directions and jointly (the robust AUROC), the K+1 cross-check; writes ood.csv,
    ood.json, README.md and the accuracy/coverage figure. The leaderboard reads ood.json.

    Models come from the model cache (trained on first use, as `attractor-bench run` would); each
    finished cell (model, rejector, attack, eps, dataset, split) is stored in the cell store, so an
    interrupted run resumes."""
    from .contracts import check_suite, plugin_errors
    from .ood.evaluate import run_ood
    from .ood.report import write_ood
    from .ood.suite import load_ood_suite
    from .report import git_commit, now

    with _errors(debug):
        spec = load_ood_suite(suite)  # validate before any work
        _check_folders(results_dir, cache_dir)
        for s in spec.suites:  # the models' and defences' contracts, before any training
            check_suite(s, attacks=False)
        with plugin_errors(*spec.suites):
            result = run_ood(spec, data_root=data_root, cache_dir=cache_dir, download=download, console=err,
                             progress=progress, device=device, workers=_cap_workers(workers))
        folder = write_ood(result, results_dir / spec.name, _command("ood", suite, results_dir, data_root, device),
                           git_commit(), now())
        out.print(f"Wrote {folder}/ood.csv, ood.json, README.md, accuracy_coverage.png ({result.meta['wall_seconds']:.0f} s).")


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A run's results folder, e.g. results/mnist_fgsm.")],
    debug: Debug = False,
) -> None:
    """Re-render a results folder's README.md from its results.csv and run.json, and its summary.json from those and
    robust_flags.json (numbers are not recomputed)."""
    from .files import write_text
    from .ood.report import rerender as rerender_ood
    from .report import rerender

    with _errors(debug):
        if (folder / "ood.json").is_file():  # an OOD run (attractor-bench ood)
            out.print(f"Wrote {write_text(folder / 'README.md', rerender_ood(folder))}.")
            return
        out.print(f"Wrote {rerender(folder)}.")


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder with one <suite>/ folder per run (each with its "
                                              "summary.json); the leaderboard files are written into it.")] = Path("results"),
    all_runs: Annotated[bool, typer.Option("--all-runs", help="Rank every model of the current code's runs, whatever "
                                           "their evaluation (else only those evaluated under the named protocol).")] = False,
    debug: Debug = False,
) -> None:
    """Rank the models evaluated under the named protocol (attractor_bench/protocol.py) in the runs under
    RESULTS_DIR by worst-case robust accuracy (RobustBench style), list the others as custom evaluations;
    write LEADERBOARD.md, LEADERBOARD.csv, LEADERBOARD.json and leaderboard_worst_case.png there."""
    from .columns import summary_table
    from .page import write_leaderboard
    from .protocol import PROTOCOL

    with _errors(debug):
        board, written = write_leaderboard(results_dir, None if all_runs else PROTOCOL.label)
        out.print(summary_table(board))
        out.print("Wrote " + ", ".join(str(p) for p in written) + ".", highlight=False)


@app.command()
def benchmark(
    model: Annotated[str, typer.Argument(help="A zoo / leaderboard name (attractor_at_01_long), or an outside model "
                                        "builder 'module:callable' (builder(train=, val=, seed=) -> trained torch module).")],
    name: Annotated[str | None, typer.Option("--name", help="The row's name (default: the model's name, else 'submitted').")] = None,
    defence: Annotated[str | None, typer.Option("--defence", help="A defence by name or 'module:callable' (default: the "
                                                "zoo model's own, else none).")] = None,
    threshold: Annotated[float | None, typer.Option("--rejector-threshold", help="The Pearson rejector's threshold "
                                                    "(attractor defence only; default: the protocol's).")] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Test images (default: the protocol's; fewer makes a custom "
                                          "evaluation, not ranked).")] = None,
    results_dir: ResultsDir = Path("results/benchmark"),
    data_root: DataRoot = None,
    cache_dir: CacheDir = None,
    download: Download = True,
    device: Annotated[str | None, typer.Option("--device", metavar="auto|cpu|cuda[:i]", help="Where it runs.")] = None,
    progress: ShowProgress = True,
    debug: Debug = False,
) -> None:
    """Evaluate one model under the leaderboard's protocol (attractor_bench/protocol.py), its classification part
    and its OOD part (score attacks on its best rejector): write the results folders with MODEL_CARD.md and show
    the row among the committed leaderboard's rows."""
    from .benchmarking import benchmark as run_benchmark

    with _errors(debug):
        command = f"attractor-bench benchmark {model}" + (f" --n {n}" if n else "") + (f" --defence {defence}" if defence else "")
        card = run_benchmark(model, name, None if defence is None else {"name": defence}, threshold, n, device, results_dir,
                             data_root, cache_dir, download, progress=progress, command=command)
        table = Table("#", "model", "clean", "worst case 0.1", "worst case 0.3", "OOD robust AUROC",
                      title="Among the committed leaderboard")
        for r in card["placement"]:  # ranked by the leaderboard's rule (equal #: not separated)
            row = [str(r["rank"]), r["model"]] + [_pct(r.get(k)) for k in ("clean", "worst_case_0.1", "worst_case_0.3",
                                                                           "ood_robust_lowest")]
            table.add_row(*(f"[bold]{c}[/]" for c in row) if r.get("new") else row)
        out.print(table)
        out.print(f"Protocol: {card['protocol'] or 'custom evaluation (not ranked)'}; weights {card['weights']}; "
                  f"wrote {card['folder']}/MODEL_CARD.md.", highlight=False)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


@app.command()
def reproduction(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder with the committed runs the document reads "
                                              "(results/mnist_fgsm/results.csv).")] = Path("results"),
    output: Annotated[Path, typer.Option("--output", help="Where the document is written.")] = Path("docs/REPRODUCTION.md"),
    debug: Debug = False,
) -> None:
    """Write the reproduction document: every number the paper reports beside ours under each reading of the
    paper a committed run measures, and a verdict per claim (numbers are read, not recomputed)."""
    from .files import write_text
    from .reproduction import render as render_reproduction

    with _errors(debug):
        out.print(f"Wrote {write_text(output, render_reproduction(results_dir))}.")


@app.command()
def validate(suite: Annotated[Path, typer.Argument(help="Suite YAML file.")],
             import_plugins: Annotated[bool, typer.Option("--import-plugins", help="Import the suite's 'module:callable' "
                                       "references to check their parameters and budgets too (runs their code).")] = False,
             no_plugins: NoPlugins = False,
             as_json: Annotated[bool, typer.Option("--json", help="Print {suite, ok, errors, summary} as JSON on stdout "
                                "(the parsed suite's summary, or the error; exit code 2 still for an invalid suite).")] = False,
             debug: Debug = False) -> None:
    """Check a suite file (or an OOD suite, one with 'models_from') without running it: everything `run`
    checks before training, including a dry run of every defence and attack on two images through
    untrained networks. Outside code it names ('module:callable') is only looked up, not imported (so
    not checked), unless --import-plugins."""
    from . import plugins
    from .config import load_suite
    from .contracts import check_suite
    from .ood.suite import load_ood_suite

    def report(message: str) -> None:
        if as_json:
            _print_json({"suite": str(suite), "ok": False, "errors": [message], "summary": None})

    with _errors(debug, report):
        raw = suitefile.read(suite)
        if isinstance(raw, dict) and "models_from" in raw:  # an OOD suite (attractor-bench ood)
            o = load_ood_suite(suite)
            n, models = len(o.model_names), sum(check_suite(s, attacks=False).models for s in o.suites)
            text = (f"{suite}: OK (OOD suite: {n} model{'s' * (n != 1)}, {len(o.ood)} OOD sets, {len(o.attacks)} score "
                    f"attacks at {len(o.eps)} eps; contracts checked: {models} model{'s' * (models != 1)} dry-run).")
            summary = _ood_summary(o, models)
        else:
            _announce_plugins(suite, no_plugins, imported=import_plugins)
            with plugins.references("refuse" if no_plugins else "import" if import_plugins else "find"):
                s = load_suite(suite)
                checked = check_suite(s)  # every contract the run checks before training
            n = sum(len(a.eps) for a in s.attacks) + 1
            text = (f"{suite}: OK ({len(s.models)} models, {len(s.attacks)} attacks, {n} (attack, eps) points, "
                    f"{1 + len(s.data.ood)} datasets; {checked.summary()}).")
            summary = _suite_summary(s, checked)
        if as_json:
            _print_json({"suite": str(suite), "ok": True, "errors": [], "summary": summary})
        else:
            out.print(text)


def _suite_summary(s, checked) -> dict:
    """A parsed suite, as validate --json shows it."""
    return {"kind": "suite", "name": s.name, "seed": s.seed, "device": s.device, "worst_case": s.worst_case,
            "reference": s.reference, "datasets": ["mnist", *s.data.ood],
            "data": {"n_test": s.data.n_test, "n_ood": s.data.n_ood},
            "models": [{"name": m.name, "preset": m.preset, "origin": m.origin,
                        "train": m.train.to_dict() if m.train is not None else None, "params": m.params,
                        "defence": {"name": m.defence.name, "origin": m.defence.origin, "params": m.defence.params}}
                       for m in s.models],
            "rejector": {"threshold": s.rejector.threshold, "target_tpr": s.rejector.target_tpr},
            "attacks": [{"label": a.label, "name": a.name, "origin": a.origin, "norm": a.norm, "eps": list(a.eps),
                         "target": a.target.value, "source": a.source, "n": a.n, "ood": a.ood, "full": a.full,
                         "loss": a.loss, "params": a.params} for a in s.attacks],
            "points": sum(len(a.eps) for a in s.attacks) + 1,
            "contracts": {"models": checked.models, "attacks": checked.attacks, "not_checked": checked.skipped}}


def _ood_summary(o, models_checked: int) -> dict:
    """A parsed OOD suite, as validate --json shows it."""
    return {"kind": "ood", "name": o.name, "seed": o.seed, "suites": [s.name for s in o.suites],
            "models": o.model_names, "n_test": o.n_test, "n_ood": o.n_ood, "ood": list(o.ood), "eps": list(o.eps),
            "attacks": list(o.attacks), "k_plus_one": o.k_plus_one, "budgets": o.budgets,
            "contracts": {"models": models_checked}}


@app.command("list")
def list_registered(as_json: Annotated[bool, typer.Option("--json", help="Print {groups, models, defences, attacks} as "
                                                         "JSON on stdout.")] = False, debug: Debug = False) -> None:
    """Show the registered models, defences and attacks, and where each comes from (built in, or the
    installed distribution whose entry point adds it). Suites can also name an outside
    'module:callable' directly."""
    from .plugins import GROUPS, available

    with _errors(debug):
        entries = {kind: [{"name": name, "origin": origin, **_describe(kind, obj)} for name, origin, obj in available(kind)]
                   for kind in ("model", "defence", "attack")}
        if as_json:
            _print_json({"groups": GROUPS, **{f"{kind}s": rows for kind, rows in entries.items()}})
            return
        rows = [[kind, e["name"], e["origin"], e["description"]] for kind, kind_rows in entries.items() for e in kind_rows]
        out.print(terminal("registered (entry point groups: " + ", ".join(GROUPS.values()) + ")",
                           ["kind", "name", "origin", "description"], rows))


def _describe(kind: str, obj) -> dict:
    """A registered model, defence or attack: its description, and what a program reads from it."""
    from .attacks import AttackEntry
    from .recipes import Recipe
    from .training import TrainConfig

    if obj is None:
        return {"description": "(not loaded)"}
    if kind == "model" and isinstance(obj, TrainConfig):
        extra = f", L_rec {obj.rec_reduction.value}, L_eigen {obj.penalty.value}" if obj.weights[1] > 0 else ""
        start = ", fine-tuned from the baseline preset's weights" if obj.init is not None else ""
        return {"description": f"attractor network, weights a = {obj.weights}, n_train = {obj.n_train}{extra}{start}",
                "type": "attractor preset", "train": obj.to_dict()}
    if kind == "model" and isinstance(obj, Recipe):
        params = {**obj.defaults, **obj.eval_defaults}
        return {"description": f"{obj.description}; params: " + ", ".join(f"{k}={v}" for k, v in params.items()),
                "type": "recipe", "params": params}
    if kind == "attack":
        entry = AttackEntry.from_callable(obj)
        how = {"gradient": "white box", "score": "black box, scores", "decision": "black box, labels"}[entry.kind]
        return {"description": f"{entry.description} ({entry.norm}, {how}{'' if entry.bounded else ', minimal perturbation'})",
                "norm": entry.norm, "kind": entry.kind, "bounded": entry.bounded, "uses_loss": entry.uses_loss}
    return {"description": ((obj.__doc__ or "").strip().splitlines() or [""])[0]}


@app.command("schema")
def print_schema() -> None:
    """Print the JSON Schema of suite files (both kinds: an OOD suite is one with 'models_from'), for
    editors that validate YAML, e.g. attractor-bench schema > suite.schema.json."""
    from .schema import json_schema

    _print_json(json_schema())


if __name__ == "__main__":  # pragma: no cover
    app()
