"""A course batch on a Dask distributed cluster (``grade --dask`` or ``--scheduler tcp://...``).

The same per-submission work as a local batch (``harness.course.batch.grade_one``), run by Dask
workers. What a worker needs travels with the work, so a worker needs only Python with the same
harness, torch and torchvision versions (no shared folders, no MNIST, no cache):

- once per worker, a :class:`GraderPlugin` carries a :class:`GradingKit`: the assignment file,
  the profile, the cached reference and metrics classifier, and MNIST as bytes. The worker
  rebuilds the batch's grader from it on its first submission;
- per submission, the task carries the submission's files (``harness.submission.files``)
  and returns the files grading wrote (``result.json``, ``runs.npz``, the report or
  ``error.json``), which this process writes under the output folder. The output folder and
  its lock stay with the process that runs the batch.

docs/batch.md ("On a Dask cluster") covers starting workers elsewhere and on Slurm.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from distributed import Client, WorkerPlugin, as_completed, get_worker

from harness.course.batch import (
    ERROR_NAME,
    BatchOptions,
    IsolationRefused,
    Outcome,
    entry_id,
    grade_one,
    isolation_refusal,
    record_error,
)
from harness.grading.grader import Grader
from harness.io import write_bytes_atomic
from harness.reference.beta_band import band_path
from harness.reference.cache import versions
from harness.reference.classifier import classifier_folder
from harness.submission.files import submission_files

PLUGIN = "harness-grader"
MAX_SUBMISSION_BYTES = 64 << 20  # what one task may carry; a bigger folder is that submission's error


# Dask's samplers cost a worker CPU all the time (a stack sample every 10 ms, the GIL every
# 1 ms): on a machine whose cores all train, that time is taken from training. A grading task
# runs for minutes, so coarse monitoring loses nothing (docs/batch.md, "Workers on other machines").
LEAN_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


class ClusterError(RuntimeError):
    """The cluster cannot grade this batch (no workers, a worker that cannot rebuild the grader)."""


@dataclass(frozen=True)
class GradingKit:
    """Everything a worker needs to rebuild the batch's :class:`~harness.grading.grader.Grader`."""

    assignment_toml: bytes
    profile: str
    device: str
    reference_name: str  # the reference's cache folder name
    reference_files: dict[str, bytes]
    classifier_files: dict[str, bytes]
    mnist: dict[str, np.ndarray]  # train/test images [N, 1, 28, 28] (uint8, as in MNIST's files) and labels
    fingerprint: str
    versions: dict[str, str]
    band_file: bytes | None = None  # the cached full-protocol beta search (harness.reference.beta_band), when built


def grading_kit(g: Grader, cache: Path, device: str) -> GradingKit:
    """Pack what graded this batch's reference: read from the cache ``g`` was built with."""
    import torch

    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    def u8(images: torch.Tensor) -> np.ndarray:
        return images.mul(255).round().to(torch.uint8).numpy()

    d = g.data
    return GradingKit(
        assignment_toml=Path(g.a.source).read_bytes(),
        profile=g.profile.name,
        device=device,
        reference_name=g.reference.directory.name,
        reference_files=files(g.reference.directory),
        classifier_files=files(classifier_folder(d, g.a, cache, torch.device(device))),
        mnist={
            "train_images": u8(d.train_images),
            "train_labels": d.train_labels.numpy(),
            "test_images": u8(d.test_images),
            "test_labels": d.test_labels.numpy(),
        },
        fingerprint=d.fingerprint,
        versions=versions(),
        band_file=band.read_bytes() if (band := band_path(g.a, d.fingerprint, cache)).is_file() else None,
    )


def unpack_kit(kit: GradingKit, folder: Path) -> Grader:
    """Rebuild the grader in ``folder`` (its cache, its assignment file). Refuses a worker whose
    libraries differ from the batch's, or whose decoded digits do not match: grades must not
    depend on which worker graded."""
    import torch

    from harness.config.assignment import load_assignment
    from harness.grading.grader import make_grader
    from harness.ml.data import DataSource, Mnist, fingerprint
    from harness.reference.build import load_result

    mine = versions()
    if mine != kit.versions:
        differ = ", ".join(f"{k} {mine.get(k)} (the batch: {v})" for k, v in kit.versions.items() if mine.get(k) != v)
        raise ClusterError(
            f"worker libraries differ from the batch's: {differ}; install the same versions on every worker"
        )
    path = folder / "assignment.toml"
    path.write_bytes(kit.assignment_toml)
    a = load_assignment(str(path))
    m = {k: torch.from_numpy(v) for k, v in kit.mnist.items()}
    splits = [
        m["train_images"].float().div_(255.0),
        m["train_labels"],
        m["test_images"].float().div_(255.0),
        m["test_labels"],
    ]
    data = Mnist(*splits, source=DataSource(folder, "the batch's client", False), fingerprint=fingerprint(*splits))
    if data.fingerprint != kit.fingerprint:
        raise ClusterError(
            f"MNIST decoded on the worker has fingerprint {data.fingerprint}, the batch's {kit.fingerprint}"
        )
    cache, device = folder / "cache", torch.device(kit.device)
    for target, contents in (
        (cache / "reference" / kit.reference_name, kit.reference_files),
        (classifier_folder(data, a, cache, device), kit.classifier_files),
    ):
        target.mkdir(parents=True, exist_ok=True)
        for name, blob in contents.items():
            (target / name).write_bytes(blob)
    if kit.band_file is not None:
        band = band_path(a, data.fingerprint, cache)
        band.parent.mkdir(parents=True, exist_ok=True)
        band.write_bytes(kit.band_file)
    reference = load_result(cache / "reference" / kit.reference_name)
    return make_grader(a, a.profile(kit.profile), data, reference, cache, device)


class GraderPlugin(WorkerPlugin):
    """Installed on every worker (also on workers that join later). The grader is built on the
    worker's first submission, in a task thread, so the worker's event loop never waits on it."""

    name = PLUGIN

    def __init__(self, kit: GradingKit):
        self.kit = kit

    def setup(self, worker) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="harness-worker-"))
        self._lock = threading.Lock()
        self._grader: Grader | None = None
        self._error: str = ""

    def teardown(self, worker) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def grader(self) -> Grader:
        with self._lock:
            if self._grader is None and not self._error:
                try:
                    self._grader = unpack_kit(self.kit, self.folder)
                except Exception as e:  # noqa: BLE001 - said once per submission, never retried in a loop
                    self._error = f"this worker cannot grade: {type(e).__name__}: {e}"
            if self._error:
                raise ClusterError(self._error)
            return self._grader


def prepare_worker() -> None:
    """A Dask task: build this worker's grader (see :meth:`DaskRunner.prepare`)."""
    get_worker().plugins[PLUGIN].grader()


def grade_on_worker(sub_id: str, files: dict[str, bytes], options: BatchOptions) -> tuple[Outcome, dict[str, bytes]]:
    """A Dask task: write the submission into a fresh folder, grade it with ``grade_one``, and
    return its outcome and the files grading wrote for it. Where the batch requires isolation
    and this worker's sandbox lacks a protection, nothing runs: the submission gets an error
    record saying so."""
    import torch

    from harness.sandbox.host import protections

    worker = get_worker()
    plugin: GraderPlugin = worker.plugins[PLUGIN]
    # each worker's own machine decides what its sandbox can enforce, not the batch's
    refusal = isolation_refusal(protections(), options.require_isolation, f"on Dask worker {worker.address}")
    if refusal:
        with tempfile.TemporaryDirectory(dir=plugin.folder) as tmp:
            outcome = record_error(Path(tmp), sub_id, IsolationRefused(refusal))
            return outcome, {ERROR_NAME: (Path(tmp) / sub_id / ERROR_NAME).read_bytes()}
    g = plugin.grader()
    threads = options.run.threads or max(1, len(os.sched_getaffinity(0)) // worker.state.nthreads)
    torch.set_num_threads(threads)  # this worker's in-process measurements share its cores like its units do
    options = dataclasses.replace(options, run=dataclasses.replace(options.run, threads=threads))
    with tempfile.TemporaryDirectory(dir=plugin.folder) as tmp:
        folder, out = Path(tmp) / "submission" / sub_id, Path(tmp) / "out"
        for rel, blob in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"a file name outside the submission folder: {rel!r}")
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        folder.mkdir(parents=True, exist_ok=True)
        outcome = grade_one(folder, g, out, options)
        written = out / sub_id
        produced = (
            {p.name: p.read_bytes() for p in sorted(written.iterdir()) if p.is_file()} if written.is_dir() else {}
        )
    return outcome, produced


def read_submission(folder: Path) -> dict[str, bytes]:
    """The submission's files (as its content hash sees them), refusing an oversized folder. A
    notebook file travels alone; the worker grades it as a folder holding it, named by its id."""
    files, size = {}, 0
    if folder.is_file():
        if folder.stat().st_size > MAX_SUBMISSION_BYTES:
            raise ValueError(f"{folder.name} is over {MAX_SUBMISSION_BYTES >> 20} MB; too big to send to a worker")
        return {folder.name: folder.read_bytes()}
    for rel in submission_files(folder):
        size += (folder / rel).stat().st_size
        if size > MAX_SUBMISSION_BYTES:
            raise ValueError(
                f"the submission holds more than {MAX_SUBMISSION_BYTES >> 20} MB of files; too big to send to a worker"
            )
        files[rel.as_posix()] = (folder / rel).read_bytes()
    return files


def receive(out: Path, sub_id: str, produced: dict[str, bytes]) -> None:
    """Write a worker's files for one submission as a local batch would have."""
    target = out / sub_id
    for name, blob in produced.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"a worker returned an unexpected file name {name!r}")
        write_bytes_atomic(target / name, blob)
    if ERROR_NAME not in produced:
        (target / ERROR_NAME).unlink(missing_ok=True)


class DaskRunner:
    """A batch runner (``harness.course.batch.Runner``) on a Dask cluster: one task per submission.
    Ctrl-C cancels every submission not yet returned; the next batch grades them again."""

    def __init__(self, client: Client, kit: GradingKit, out: Path, options: BatchOptions, wait_s: float = 60.0):
        self.client, self.out, self.options = client, out, options
        if not client.scheduler_info().get("workers"):
            try:
                client.wait_for_workers(1, timeout=wait_s)
            except TimeoutError:
                raise ClusterError(
                    f"the Dask scheduler has no workers (waited {wait_s:g} s); start some with "
                    f"`dask worker {client.scheduler.address}`"
                ) from None
        client.register_plugin(GraderPlugin(kit), name=PLUGIN)
        self.prepare()

    def prepare(self) -> None:
        """Build the grader on every worker now, in a task on each, so a worker that cannot
        grade stops the batch before it starts rather than failing every submission."""
        stamp = time.time_ns()
        futures = [
            self.client.submit(
                prepare_worker, workers=[w], allow_other_workers=False, pure=False, key=f"harness-prepare-{i}-{stamp}"
            )
            for i, w in enumerate(self.client.scheduler_info()["workers"])
        ]
        for future in futures:
            try:
                future.result()
            except Exception as e:  # noqa: BLE001
                raise ClusterError(f"{e}") from None

    def __call__(self, folders: list[Path]) -> Iterator[Outcome]:
        futures, early = {}, []
        for f in folders:
            sid = entry_id(f, self.options.run.name_pattern)
            try:
                files = read_submission(f)
            except (OSError, ValueError) as e:
                early.append(record_error(self.out, sid, e))
                continue
            future = self.client.submit(
                grade_on_worker, sid, files, self.options, key=f"grade-{sid}-{time.time_ns()}", pure=False
            )
            futures[future] = sid
        try:
            yield from early
            for future in as_completed(list(futures)):
                sub_id = futures.pop(future)
                try:
                    outcome, produced = future.result()
                    receive(self.out, sub_id, produced)
                except Exception as e:  # noqa: BLE001 - a lost worker (KilledWorker) costs this submission only
                    outcome = record_error(self.out, sub_id, e)
                yield outcome
        finally:
            if futures:
                self.client.cancel(list(futures))


def connect(scheduler: str | None, workers: int, timeout_s: float = 60.0) -> tuple[Client, object | None]:
    """A client of the cluster at ``scheduler`` (``tcp://HOST:PORT``), or of a new
    ``LocalCluster`` of ``workers`` one-thread worker processes on loopback (``scheduler=None``).
    Returns the client and the local cluster to close (None for a remote one)."""
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout_s), None
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    import dask
    from distributed import LocalCluster

    with dask.config.set(LEAN_WORKERS):  # the workers' processes read it when they start
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
        )
    return Client(cluster), cluster
