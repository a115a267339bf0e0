"""Cells computed by several processes: local worker processes (`--workers N`) or a Dask cluster
(`--cluster ADDRESS`, or `--cluster local` for a local Dask cluster of N worker processes).

The main process trains or loads every model first, then pickles one `Workspace` (the suite, the
images, the trained models with their defences) and sends it once to each worker; workers never
train. Jobs are groups of cells that share an intermediate (the examples of a transfer attack or
of a minimal-perturbation attack), so an intermediate is computed once. A worker computes a
cell exactly as the sequential run does (`cells.compute_cell`: the same per-cell seeds, the same
deterministic algorithms) and stores it atomically in the cell store; the main process then reads
every cell from the store in the suite's order, so the tables equal the sequential run's. An OOD
run's cells (`attractor_bench.ood.cells`) travel the same way: both workspaces implement
`CellWorkspace` (a job as plain values and back, a cell computed), so this module knows no kind of cell.

Threads: each local worker gets an equal share of this machine's torch threads (at least one).
A cell computed with one thread gave the same bits as with two on the development machine (the
tests compare whole tables; `benchmarks/parallel_suite.py` prints whether they are identical); a
machine whose kernels differ there would show it as `tables_identical=false`. On CUDA the cells
of several workers share the GPU.

Why Dask rather than Ray: `pip install dask distributed` is two pure-Python wheels (Ray is a large
binary with its own object store and dashboard), a Dask scheduler is one command
(`dask scheduler`, `dask worker ADDRESS`), and `LocalCluster` gives the same API on one machine
for tests. Remote workers need this package installed and the datasets are not needed (the images
travel in the workspace); the cell store must be a folder every worker can write (a shared
filesystem), or the main process stores the cells workers send back.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Protocol
from urllib.parse import urlsplit

import cloudpickle

import torch

from .contracts import plugin_errors
from .errors import AttractorBenchError, ConfigError
from .store import CellStore

_STATE: dict = {}


def jobs(cells: list) -> list[list]:
    """Cells grouped by what they share (`Cell.group`), in first-appearance order; within a job, a
    cascade's cells after the cells they follow."""
    groups: dict[str, list] = {}
    for c in cells:
        groups.setdefault(c.group, []).append(c)
    return [sorted(job, key=lambda c: len(c.after)) for job in groups.values()]


def _payload(ws) -> bytes:
    """The workspace as bytes (cloudpickle: registry entries are closures, sent by value)."""
    try:
        return cloudpickle.dumps(ws, protocol=pickle.HIGHEST_PROTOCOL)
    except UNPICKLABLE as e:
        raise _unpicklable(e) from e


UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError)


def _unpicklable(e: Exception) -> ConfigError:
    return ConfigError(f"The run cannot be sent to worker processes: {e}. An outside model, defence or attack holds "
                       "something that cannot be pickled (an open file, a lock, a CUDA stream); "
                       "run without --workers/--cluster.")


def _setup(threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    torch.use_deterministic_algorithms(True, warn_only=True)


def _init_local(payload: bytes, threads: int, store_root: str, fresh: bool) -> None:
    _setup(threads)
    _STATE["ws"] = pickle.loads(payload)
    _STATE["store"] = (store_root, fresh)


class CellWorkspace(Protocol):
    """What `compute` needs of a run's workspace (`cells.Workspace`, `ood.cells.OODWorkspace`): a job as
    plain values and back (`light`, `cells`), a cell computed and stored (`compute`), the suites whose
    outside code may fail inside it (`suites`). A cell names its coordinates (`where`) and its `key`."""

    @property
    def suites(self) -> tuple: ...

    def light(self, job: list) -> list: ...

    def cells(self, light: list) -> list: ...

    def compute(self, c, store: CellStore) -> tuple[dict, float]: ...


def _compute(ws: CellWorkspace, store, job: list, send_back: bool = False) -> list[tuple[str, float, dict | None]]:
    """Compute and store a job's cells; with `send_back`, also return their arrays (the main
    process stores them: this worker's store is a scratch folder the main process cannot see)."""
    done = []
    for c in ws.cells(job):
        with plugin_errors(*ws.suites):  # an exception of outside code, named here, before it is pickled
            out, seconds = ws.compute(c, store)
        done.append((c.key, seconds, {"out": out, "header": {"seconds": seconds, "cell": c.where}} if send_back else None))
    return done


def _run_local(job: list) -> list[tuple[str, float, dict | None]]:
    root, fresh = _STATE["store"]
    return _compute(_STATE["ws"], CellStore(root, fresh=fresh), job)  # --fresh: no examples of earlier runs either


def _run_dask(ws, store_root: str, fresh: bool, threads: int, job: list) -> list[tuple[str, float, dict | None]]:
    """On a Dask worker: store where the cache folder is writable; else send the arrays back."""
    _setup(threads)
    try:
        os.makedirs(store_root, exist_ok=True)
        writable = os.access(store_root, os.W_OK)
    except OSError:
        writable = False
    if not writable and "scratch" not in _STATE:  # one scratch folder per worker process, for intermediates
        _STATE["scratch"] = tempfile.mkdtemp(prefix="attractor-bench-cells-")
    return _compute(ws, CellStore(store_root if writable else _STATE["scratch"], fresh=fresh), job, send_back=not writable)


def check_cluster(cluster: str | None) -> None:
    """Fail fast, before any training, when Dask is missing or the scheduler does not answer."""
    if not cluster:
        return
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise ConfigError("--cluster needs Dask: pip install -e '.[distributed]' (or pip install dask distributed).") from None
    if cluster == "local":
        return
    url = urlsplit(cluster if "://" in cluster else f"tcp://{cluster}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ConfigError(f"--cluster {cluster!r}: expected a Dask scheduler address such as tcp://host:8786, or local.")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise ConfigError(f"Cannot reach the Dask scheduler at {cluster!r}: {e}. Start one with `dask scheduler` and "
                          "workers with `dask worker ADDRESS`, or use --cluster local.") from None


def compute(ws: CellWorkspace, cells: list, store, workers: int = 2, cluster: str | None = None,
            on_done: Callable | None = None) -> set[str]:
    """Compute `cells` in worker processes or on a cluster; return the keys computed. A worker that
    dies stops the run with an error; the cells finished until then stay stored (atomically), so
    running the same command again resumes."""
    if not cells:
        return set()
    by_key = {c.key: c for c in cells}
    computed: set[str] = set()

    def finished(results) -> None:
        for key, seconds, sent in results:
            if sent is not None:  # a worker that could not write the store sent the cell back
                store.put(key, sent["out"], sent["header"])
            computed.add(key)
            if on_done is not None:
                on_done(by_key[key], seconds)

    work = [ws.light(job) for job in jobs(cells)]
    workers = min(workers, len(work))  # no more processes than jobs
    if cluster:
        _dask(ws, work, str(store.root), store.fresh, workers, cluster, finished)
    else:
        _processes(_payload(ws), work, str(store.root), store.fresh, workers, finished)
    return computed


def _processes(payload: bytes, work: list, store_root: str, fresh: bool, workers: int, finished: Callable) -> None:
    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's thread pools
    done = 0
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_local,
                               initargs=(payload, threads, store_root, fresh))
    try:
        futures = [pool.submit(_run_local, job) for job in work]
        for f in as_completed(futures):
            finished(f.result())
            done += 1
    except BrokenProcessPool as e:
        # Seen on Python 3.11.7: after a worker was killed, another stayed blocked on the job queue's
        # lock and the pool waited for it for ever (its own terminate had missed it). End them all.
        _terminate(pool)
        raise AttractorBenchError(
            f"A worker process died ({e}); {done} of {len(work)} jobs had finished. Every cell finished so far is "
            "stored; run the same command again to compute the rest.") from None
    except BaseException:
        # Ctrl-C, SIGTERM sent to this process alone (`kill PID`: the CLI raises it here), a cell's error: the
        # cells in progress are given up (a cell is stored whole or not at all), not waited for; a standard
        # AutoAttack cell can take an hour.
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now (SIGTERM), whatever they are doing."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def _dask(ws, work: list, store_root: str, fresh: bool, workers: int, cluster: str, finished: Callable) -> None:
    """Dask (checked by `check_cluster` before the run) serializes the workspace itself (cloudpickle)."""
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    local = None
    try:
        if cluster == "local":
            local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(local)
        else:
            client = Client(cluster, timeout=30)
    except OSError as e:
        raise ConfigError(f"Cannot reach the Dask scheduler at {cluster!r}: {e}. Start one with `dask scheduler` and "
                          "workers with `dask worker ADDRESS`, or use --cluster local.") from None
    try:
        n = max(1, len(client.scheduler_info().get("workers", {})))
        threads = max(1, torch.get_num_threads() // n) if cluster == "local" else torch.get_num_threads()
        try:
            [shared] = client.scatter([ws], broadcast=True)
        except UNPICKLABLE as e:
            raise _unpicklable(e) from e
        futures = [client.submit(_run_dask, shared, store_root, fresh, threads, job, pure=False) for job in work]
        done = 0
        try:
            for f in dask_completed(futures):
                finished(f.result())
                done += 1
        except Exception as e:  # KilledWorker, a lost scheduler, an attack's own error
            if isinstance(e, AttractorBenchError):
                raise
            raise AttractorBenchError(
                f"The cluster failed on a job ({type(e).__name__}: {e}); {done} of {len(work)} jobs had finished. Every "
                "cell finished so far is stored; run the same command again to compute the rest.") from None
    finally:
        client.close()
        if local is not None:
            local.close()
