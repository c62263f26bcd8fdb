"""Starting or joining Ray, the same way for every command, with a quiet console.

A command's console shows what a researcher wants: what it is doing, one line per finished
fold, the tables. Ray's own messages go to files instead:

- messages Ray logs in this driver process (start-up, Ray Data's executions) go to the file
  ``ensure_ray`` is given (the commands use ``<storage>/logs/<time>-<command>.log``);
- the fold workers' output goes to ``<storage>/<run>/logs/slot-<n>.log`` (``train/runner.py``);
- every Ray process's raw log stays in Ray's session folder (``<RAY_TMPDIR>/session_*/logs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

# Ray keeps at most about one idle worker process per CPU and ends the others after a second.
# A LOSO starts many short-lived workers (Ray Data reads that hold no CPU, a fold's helper
# actors), so on a small machine Ray would start, end and start again processes that each cost
# a second or two of CPU importing Ray: measured here, the 8-fold demo took 305 s with the
# default and 265 s with 16 idle workers kept. Only for a local Ray this process starts; a
# value the user set wins.
IDLE_WORKERS_ENV = "RAY_num_workers_soft_limit"


# Ray starts at most one worker process per CPU at a time, and says so on the console when more
# are asked for; the fold slots' Train runs ask for several each (controller, worker, helpers).
STARTUP_ENV = "RAY_worker_maximum_startup_concurrency"


def keep_idle_workers(cpus: int | None = None) -> None:
    """Let a Ray started from this process keep ``max(16, 4 x cpus)`` idle worker processes
    and start up to 8 at once (the variables are read when Ray starts)."""
    cpus = cpus or os.cpu_count() or 1
    os.environ.setdefault(IDLE_WORKERS_ENV, str(max(16, 4 * cpus)))
    os.environ.setdefault(STARTUP_ENV, str(max(8, cpus)))


def ray_messages_to(log_file: str | Path) -> Path:
    """Ray's loggers in this process write to ``log_file`` instead of the console (their file
    handlers, into Ray's session folder, stay)."""
    import ray
    import ray.data  # noqa: F401  (sets up Ray Data's loggers, which are then redirected)

    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    names = ["ray"] + [n for n in logging.root.manager.loggerDict if n.startswith("ray.")]
    for name in names:
        logger = logging.getLogger(name)
        if logger.propagate and name != "ray":
            continue  # reaches "ray"'s handlers
        for h in list(logger.handlers):
            if not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.addHandler(handler)
    return log_file


# Ray's local start-up fails now and then on a busy machine: the raylet waits a fixed time for
# a helper's port file and gives up ("The current node timed out during startup"). Starting
# again succeeds; any other failure is reported as it is.
STARTUP_RACE = "timed out during startup"
START_TRIES = 3


# How object-store clients find their endpoint and credentials (pyarrow's S3 and GCS file
# systems read these). Ray's worker processes start from the node's environment, not the
# driver's: a driver that joins a running cluster passes the ones it has to its job's workers,
# so the shards and results it names on a store are reachable from every task.
STORAGE_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
               "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS")
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in a driver of `ray job submit`


def storage_env() -> dict[str, str]:
    """The storage variables a joining driver passes to its workers. None under ``ray job
    submit``: there the job's runtime environment (``--runtime-env-json``) is what workers
    get, and Ray refuses a second one naming the same variables."""
    if JOB_CONFIG_ENV in os.environ:
        return {}
    return {k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)}


class RayStartError(RuntimeError):
    """Ray could not be started or joined; the message names what failed and where to look."""


def ensure_ray(num_cpus: int | None = None, object_store_memory: int | None = None,
               log_file: str | Path | None = None, tries: int = START_TRIES) -> None:
    """Join the cluster named by RAY_ADDRESS (as under ``ray job submit``), else start a local
    Ray: the known start-up race (``STARTUP_RACE``) is retried up to ``tries`` times, saying
    so; any other failure raises ``RayStartError`` naming the logs to read. Does nothing when
    Ray is already initialised in this process. With ``log_file``, Ray's messages go there
    instead of the console (and workers' output never reaches the driver's console)."""
    import ray
    import ray.data

    from .console import Ticker

    if ray.is_initialized():
        return
    quiet = log_file is not None
    if quiet:
        ray_messages_to(log_file)
    address = os.environ.get("RAY_ADDRESS")
    what = f"joining the Ray cluster at {address}" if address else "starting a local Ray"
    with Ticker(what):
        for attempt in range(1, tries + 1):
            try:
                _init(address, num_cpus, object_store_memory, log_file if quiet else None)
                break
            except Exception as exc:  # noqa: BLE001  (Ray raises plain Exceptions here)
                with contextlib.suppress(Exception):
                    ray.shutdown()
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if STARTUP_RACE in str(exc) and attempt < tries and not address:
                    print(f"Ray's local node did not come up in time (a known start-up race "
                          f"on a busy machine); starting it again (attempt {attempt + 1} of "
                          f"{tries})", flush=True)
                    continue
                where = f"{log_file} and " if quiet else ""
                raise RayStartError(
                    f"{what} failed: {first}. Ray's messages: {where}Ray's session folder "
                    f"({os.environ.get('RAY_TMPDIR', '/tmp')}/ray/session_latest/logs)") \
                    from None
    if quiet:
        # progress bars of Ray Data's passes would interleave with the command's own lines
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"Ray's messages: {log_file}; every Ray process's log: {_session_logs()}",
              flush=True)


def _init(address: str | None, num_cpus, object_store_memory, log_file) -> None:
    import ray

    quiet = log_file is not None
    # Processes a local Ray starts here (its services) write their stderr to the log too.
    with _stderr_to(log_file):
        if address:
            env = storage_env()
            ray.init(address=address, log_to_driver=not quiet, configure_logging=not quiet,
                     runtime_env={"env_vars": env} if env else None)
        else:
            keep_idle_workers(num_cpus)
            # "local": a new Ray of this process's own, never a cluster a crashed earlier run
            # left its address behind for (Ray otherwise joins whatever that file names)
            ray.init(address="local", num_cpus=num_cpus,
                     object_store_memory=object_store_memory, include_dashboard=False,
                     log_to_driver=not quiet, configure_logging=not quiet)


@contextlib.contextmanager
def _stderr_to(path):
    """File descriptor 2 of this process (and of what it starts meanwhile) appended to
    ``path``."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _session_logs() -> str:
    import ray

    try:
        return str(Path(ray._private.worker._global_node.get_session_dir_path()) / "logs")
    except AttributeError:  # joined a remote cluster: its head node holds them
        return "the head node's Ray session folder (session_latest/logs)"


def leave_after_interrupt() -> bool:
    """After Ctrl+C: whether this process runs Ray, and if so a line saying how its workers
    stop; the caller then ends the process at once (``os._exit``). Ray is not shut down from
    here: threads that drive fold slots may still be calling into Ray, and a call into a Ray
    already shut down ends the process with Ray's own exit status (1), whichever thread got
    there first. None is needed: the processes of a Ray this process started share its fate
    (Ray starts them so), and a cluster ends the actors of a driver that has gone."""
    import ray

    if not ray.is_initialized():
        return False
    local = not os.environ.get("RAY_ADDRESS")  # ensure_ray joins the cluster it names
    print("stopping Ray's workers: " + ("the local Ray this command started stops with it"
                                        if local else "this run's actors on the cluster end "
                                        "with this driver"), file=sys.stderr, flush=True)
    return True


def driver_log(storage_path: str, workdir: Path, command: str) -> Path:
    """Where a command's Ray messages go: ``<storage>/logs/`` (``<workdir>/logs/`` when the
    storage is remote)."""
    from .storage import open_storage

    local = open_storage(storage_path).local_path("logs")
    base = Path(local) if local else Path(workdir) / "logs"
    return base / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}.log"
