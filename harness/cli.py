"""Command line: ``python -m harness <verb>``; each verb maps to one module (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.config.assignment import DEFAULT_ASSIGNMENT, AssignmentError, bundled_assignments, load_assignment

# torch loads only with the verbs that train or run code: `export`, `render` and `init` start fast without it
ENV_DATA = "HARNESS_DATA"  # harness.ml.data.ENV_DATA, repeated here to keep the parser torch-free


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--assignment",
        help=f"bundled assignment ({', '.join(bundled_assignments())}) or a .toml path (default: for a notebook, "
        f"the handout its code follows; else {DEFAULT_ASSIGNMENT})",
    )
    p.add_argument(
        "--profile", help="full | quick | smoke, as the assignment defines (default: full on CUDA, quick on CPU)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument(
        "--data", help=f"MNIST root with MNIST/raw/ (default: ${ENV_DATA}, else the user cache, downloading)"
    )
    p.add_argument(
        "--cache", help="cache folder (default: $HARNESS_CACHE, else $XDG_CACHE_HOME/harness or ~/.cache/harness)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for CI and logs)")


def _assignment(args: argparse.Namespace, path: Path | None = None):
    """``--assignment``; without it, the bundled handout a notebook's code follows (recognised by
    its [notebook] markers), else the default assignment."""
    if args.assignment:
        return load_assignment(args.assignment)
    if path is not None and _is_notebook(path):
        from harness.submission.notebook_load import handout_of

        a = handout_of(path, [load_assignment(name) for name in bundled_assignments()])
        print(f"assignment {Path(a.source).stem}: the handout {path.name} follows", file=sys.stderr)
        return a
    if path is not None and path.is_dir():
        from harness.submission.notebook_load import course_handout

        found = course_handout(path, [load_assignment(name) for name in bundled_assignments()])
        if found is not None:
            print(f"assignment {Path(found.source).stem}: the handout of the course's notebooks", file=sys.stderr)
            return found
    return load_assignment(DEFAULT_ASSIGNMENT)


def _is_notebook(path: Path) -> bool:
    """A notebook file, or a student's folder with one notebook and no submission.py."""
    from harness.submission.notebook_load import NOTEBOOK_SUFFIX, notebooks_in

    if path.is_file():
        return path.suffix == NOTEBOOK_SUFFIX
    return path.is_dir() and not (path / "submission.py").exists() and len(notebooks_in(path)) == 1


def default_profile(device) -> str:
    """The profile a verb uses without ``--profile``: the course's full protocol on a GPU, the
    course-scale ``quick`` one on a CPU (``full`` takes hours there)."""
    return "full" if device.type == "cuda" else "quick"


def _profile_and_device(args: argparse.Namespace, a):
    """(profile, device) from ``--profile`` and ``--device``; without ``--profile``, the
    device's default, said on the first line of output."""
    from harness.ml.training import resolve_device

    explicit = a.profile(args.profile) if args.profile else None  # an unknown name is refused first
    device = resolve_device(args.device)
    if explicit is not None:
        return explicit, device
    profile = a.profile(default_profile(device))
    other = (
        "--profile full for the course's full protocol"
        if profile.name != "full"
        else "--profile quick for a faster run"
    )
    print(f"profile {profile.name} (default on {device.type}; {other})", file=sys.stderr)
    return profile, device


def _isolation_gate(required: bool) -> bool:
    """Before any student code runs: a warning per sandbox protection not in force here, or,
    when isolation is required, the refusal (returns True: exit 2)."""
    from harness.course.batch import isolation_refusal, isolation_warnings
    from harness.sandbox.host import protections

    prot = protections()
    refusal = isolation_refusal(prot, required)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return True
    for w in isolation_warnings(prot):
        print(f"warning: {w}", file=sys.stderr)
    return False


def _build_band(a, reference, data, device, cache: Path, quiet: bool) -> None:
    """The full-protocol beta band, built once when it is missing (saying so, with an estimate of
    the time), so that no grade rests on a provisional band; ``--no-band`` skips it."""
    from harness.reference.beta_band import ensure_band, estimate_seconds, load_band

    if load_band(a, data.fingerprint, cache) is not None:
        return
    eta = estimate_seconds(a, reference.runs, len(data.train_images))
    about = f"about {eta / 60:.0f} min on this device, " if eta else ""
    print(
        f"building the full-protocol beta band for {a.meta.id} once ({about}cached for every later grade; "
        "--no-band skips it and judges tuned betas provisionally; docs/reference.md#the-beta-band)",
        file=sys.stderr,
    )
    started = time.perf_counter()
    ensure_band(a, data, device, cache, quiet=quiet)
    print(f"beta band built in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def cmd_reference(args: argparse.Namespace) -> int:
    from harness.ml.data import load_mnist
    from harness.reference.build import build_reference, table
    from harness.reference.cache import cache_root

    a = _assignment(args)
    profile, device = _profile_and_device(args, a)
    data = load_mnist(args.data)
    if not args.quiet:
        print(
            f"reference for {a.meta.id}, profile {profile.name} ({profile.description}), device {device}, "
            f"data {data.source.root} ({data.source.origin})",
            file=sys.stderr,
        )
    started = time.perf_counter()
    if args.band:
        from harness.reference.beta_band import ensure_band

        band = ensure_band(a, data, device, cache_root(args.cache), quiet=args.quiet)
        print(band_table(band))
        print(f"done in {time.perf_counter() - started:.1f} s")
        return 0
    result = build_reference(a, profile, data, device, cache_root(args.cache), force=args.force, quiet=args.quiet)
    print(table(result))
    if profile.name == "full":
        from harness.reference.beta_band import load_band

        print(band_table(load_band(a, data.fingerprint, cache_root(args.cache))))
    if result.classifier_accuracy < a.metrics.classifier_min_accuracy:
        print(
            f"warning: the metrics classifier reaches {result.classifier_accuracy:.2%} test accuracy, below the "
            f"assignment's minimum {a.metrics.classifier_min_accuracy:.0%}: sample metrics are less trustworthy",
            file=sys.stderr,
        )
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def band_table(band) -> str:
    """The full-protocol beta search as text: one row per searched beta, then the band."""
    lines = [f"{'beta':>8}{'test MSE':>10}{'sample FID':>12}{'KL':>9}{'active':>8}  verdict"]
    for s in band.searched:
        kl = "-" if s.kl is None else f"{s.kl:.2f}"
        verdict = ("in band: " if s.passes else "out: ") + s.why
        lines.append(f"{s.beta:>8g}{s.test_mse:>10.4f}{s.sample_fid:>12.2f}{kl:>9}{s.active_units!s:>8}  {verdict}")
    lines.append(f"beta band ({band.source}): {band.describe()}")
    return "\n".join(lines)


def _outputs(args: argparse.Namespace, folder: Path) -> Path:
    """The submission's results folder, made now."""
    path = folder.resolve()
    out = Path(args.out) / (path.stem if path.is_file() else path.name)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _submission_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the verbs that run a submission's code."""
    p.add_argument("--out", default="reports", help="reports folder (default: %(default)s)")
    p.add_argument("--timeout", type=float, help="seconds per check unit of student code (default: the assignment's)")
    p.add_argument("--memory", type=int, help="memory cap per unit in MB (default: the assignment's)")


def _name_pattern(text: str) -> str:
    from harness.submission.identity import compile_pattern

    try:
        compile_pattern(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _name_pattern_option(p: argparse.ArgumentParser) -> None:
    from harness.submission.identity import CANVAS_PATTERN

    p.add_argument(
        "--name-pattern",
        type=_name_pattern,
        default=CANVAS_PATTERN,
        metavar="REGEX",
        help="how a notebook's file name names its student: a regular expression with named groups student and/or "
        "student_id (default: Canvas's name_userid_fileid_original; docs/submission-format.md#file-names)",
    )


def _isolation_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--require-isolation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refuse (exit 2) to run student code unless every protection of the sandbox is in force "
        f"here (docs/sandbox.md); default: {default}",
    )


def cmd_check(args: argparse.Namespace) -> int:
    from harness.grading.check import check_submission, checklist
    from harness.grading.result import write_result
    from harness.grading.session import RunOptions
    from harness.ml.data import load_mnist

    folder = Path(args.submission)
    if not folder.exists():
        print(f"error: {folder}: no such submission (a folder or a .ipynb notebook)", file=sys.stderr)
        return 2
    a = _assignment(args, folder)
    if _isolation_gate(bool(args.require_isolation)):
        return 2
    data = load_mnist(args.data)
    out = _outputs(args, folder)
    options = RunOptions(timeout_s=args.timeout, memory_mb=args.memory, name_pattern=args.name_pattern)
    result = check_submission(folder, a, data, options)
    path = out / "check.json"
    write_result(path, result)
    print(checklist(result))
    print(f"written: {path}")
    return 1 if result.failed else 0


def _training_setup(args: argparse.Namespace):
    """What the verbs that train a submission share: (assignment, profile, submission folder,
    device, data), or None after saying that the folder does not exist."""
    from harness.ml.data import load_mnist

    folder = Path(args.submission)
    if not folder.exists():
        print(f"error: {folder}: no such submission (a folder or a .ipynb notebook)", file=sys.stderr)
        return None
    a = _assignment(args, folder)
    profile, device = _profile_and_device(args, a)
    return a, profile, folder, device, load_mnist(args.data)


def _check_overrides(out: Path, root: Path, a, pattern: str | None = None) -> bool:
    """Validate ``<out>/overrides.csv`` for the course under ``root`` (notebooks named by
    ``pattern``, Canvas's by default): print its warnings, or its errors and return True (the
    batch is refused: exit 2)."""
    from harness.course.batch import course_entries, entry_id
    from harness.course.overrides import OverridesError, check_course
    from harness.submission.identity import CANVAS_PATTERN

    pattern = pattern or CANVAS_PATTERN

    try:
        warnings = check_course(out, [entry_id(f, pattern) for f in course_entries(root, out, pattern)[0]], a)
    except OverridesError as e:
        print(f"error: {e}", file=sys.stderr)
        return True
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return False


def _grade_course(args: argparse.Namespace, root: Path, grader, cache: Path, device: str, started: float) -> int:
    """``grade`` on a folder of submissions: a batch over one shared reference (harness.course.batch)."""
    import os

    from harness.course.batch import BatchLocked, BatchOptions, grade_batch
    from harness.course.overrides import OverridesError
    from harness.grading.session import RunOptions

    out = Path(args.out)
    if args.gradescope is not None:
        print(
            "note: --gradescope writes one submission's file; it is ignored for a folder of submissions",
            file=sys.stderr,
        )
    workers = max(1, args.workers)
    # workers x threads = the cores this machine gives the batch; a remote cluster's workers decide for themselves
    threads = 0 if args.scheduler else max(1, len(os.sched_getaffinity(0)) // workers)
    options = BatchOptions(
        workers=workers,
        force=args.force,
        render=not args.no_report,
        quiet=args.quiet,
        require_isolation=args.require_isolation is not False,
        run=RunOptions(
            timeout_s=args.timeout,
            memory_mb=args.memory,
            train_timeout_s=args.train_timeout,
            device=device,
            threads=threads,
            quiet=True,
            name_pattern=args.name_pattern,
        ),
    )
    runner, closers = None, []
    if args.dask or args.scheduler:
        from harness.course.cluster import ClusterError, DaskRunner, connect, grading_kit

        try:
            closers = [c for c in connect(args.scheduler, workers) if c is not None]
            client = closers[0]
            if not args.quiet:
                print(f"Dask cluster: {client.scheduler.address}", file=sys.stderr)
            runner = DaskRunner(client, grading_kit(grader, cache, device), out, options)
        except ClusterError as e:
            print(f"error: {e}", file=sys.stderr)
            for c in closers:
                c.close()
            return 2
    try:
        summary = grade_batch(root, grader, out, options, runner)
    except (BatchLocked, OverridesError) as e:  # overrides.csv made invalid while the reference was built
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        for c in closers:
            c.close()
    for note in summary.notes:
        print(f"  - {note}")
    for o in summary.outcomes:
        if o.error:
            print(f"  ! {o.id}: {o.error}")
    for line in summary.similarity_lines:
        print(f"  - {line}")
    print(summary.closing_line())
    print(f"written: {summary.grades}")
    if summary.similarity:
        print(f"written: {summary.similarity}")
    elif summary.similarity_error:  # flags for review only: the grades stand
        print(f"error: the similarity comparison failed ({summary.similarity_error})", file=sys.stderr)
    if summary.summary:
        print(f"written: {summary.summary}")
    else:
        print(f"error: summary.html could not be drawn ({summary.summary_error})", file=sys.stderr)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 1 if summary.count("error") else 0


def _names(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def nothing_to_grade(folder: Path, a, out: Path) -> str | None:
    """Why a course folder holds no submission to grade (no visible sub-folder or notebook besides
    ``out``), saying what it holds instead; None when it holds one."""
    from harness.course.batch import discover

    if [f for f in discover(folder) if f.resolve() != out.resolve()]:
        return None
    spec = a.submission
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return f"no submission in {folder}: it is empty"
    return (
        f"no submission in {folder}: it holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
        f"({_names(entries)}) and no notebook or submission folder; hand in the course's notebook (.ipynb) or a "
        f"folder with {spec.module}, {spec.answers} and {spec.meta}, or a folder of such (docs/submission-format.md)"
    )


def cmd_grade(args: argparse.Namespace) -> int:
    from harness.grading.grade import grade_submission, item_table
    from harness.grading.grader import make_grader
    from harness.grading.result import gradescope, write_result
    from harness.grading.session import RunOptions
    from harness.io import write_json_atomic
    from harness.reference.build import build_reference
    from harness.reference.cache import cache_root
    from harness.submission.detect import is_submission

    setup = _training_setup(args)
    if setup is None:
        return 2
    a, profile, folder, device, data = setup
    cache = cache_root(args.cache)
    started = time.perf_counter()
    if not args.quiet:
        print(
            f"grading {folder} for {a.meta.id}, profile {profile.name} ({profile.description}), device {device}",
            file=sys.stderr,
        )
    course = not is_submission(folder, a)
    if course:  # refused before the reference is built
        nothing = nothing_to_grade(folder, a, Path(args.out))
        if nothing:
            print(f"error: {nothing}", file=sys.stderr)
            return 2
        if _check_overrides(Path(args.out), folder, a, args.name_pattern):
            return 2
    required = course if args.require_isolation is None else args.require_isolation  # a course: required by default
    # a remote cluster runs no student code here: each worker checks its own sandbox (harness.course.cluster)
    if not (course and args.scheduler) and _isolation_gate(required):
        return 2
    reference = build_reference(a, profile, data, device, cache, quiet=args.quiet)
    if not args.no_band:
        _build_band(a, reference, data, device, cache, args.quiet)
    grader = make_grader(a, profile, data, reference, cache, device)
    if grader.band is None:  # always shown: it changes how beta_tuning reads
        print(
            f"note: no full-protocol beta band is cached for {a.meta.id} and this data, so tuned betas are judged "
            f"provisionally by the {profile.name} profile's own search and beta_tuning is needs_review; build the "
            "band once with `python -m harness reference --band` (docs/reference.md#the-beta-band)",
            file=sys.stderr,
        )
    if course:
        return _grade_course(args, folder, grader, cache, str(device), started)
    out = _outputs(args, folder)
    options = RunOptions(
        timeout_s=args.timeout,
        memory_mb=args.memory,
        train_timeout_s=args.train_timeout,
        device=str(device),
        out=out,
        quiet=args.quiet,
        name_pattern=args.name_pattern,
    )
    result = grade_submission(folder, grader, options)
    path = out / "result.json"
    write_result(path, result)
    print(item_table(result))
    print(f"written: {path}, {out / result.artifacts}")
    if args.gradescope is not None:
        gs = Path(args.gradescope) if args.gradescope else out / "results.json"
        gs.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(gs, gradescope(result))
        print(f"written: {gs} (Gradescope)")
    code = 0 if args.no_report else _render(out, ["report"], args.quiet)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return code


def _render(folder: Path, documents: list[str] | None = None, quiet: bool = False) -> int:
    """Render documents in a child process (the report with the instructor's overrides merged in); print what was
    written and what failed (exit 1)."""
    from harness.course.reports import render_documents

    code = 0
    if not quiet:
        print(f"rendering {', '.join(documents or ['every document'])} in {folder} ...", file=sys.stderr)
    for r in render_documents(folder, documents):
        for path in (r.html, r.pdf):
            if path is not None:
                print(f"written: {path}")
        if r.error:
            print(f"error: {r.document}: {r.error}", file=sys.stderr)
            code = 1
    return code


def cmd_report(args: argparse.Namespace) -> int:
    if args.stored:
        return _stored_report(args)
    from harness.grading.result import write_result
    from harness.grading.session import RunOptions
    from harness.grading.write_up import RESULT_NAME, write_up

    setup = _training_setup(args)
    if setup is None:
        return 2
    a, profile, folder, device, data = setup
    started = time.perf_counter()
    if not args.quiet:
        print(
            f"training {folder} with its own code for the write-up, profile {profile.name} ({profile.description}), "
            f"device {device}",
            file=sys.stderr,
        )
    if _isolation_gate(bool(args.require_isolation)):
        return 2
    out = _outputs(args, folder)
    options = RunOptions(
        memory_mb=args.memory,
        train_timeout_s=args.train_timeout,
        device=str(device),
        out=out,
        quiet=args.quiet,
        name_pattern=args.name_pattern,
    )
    result = write_up(folder, a, profile, data, options)
    write_result(out / RESULT_NAME, result)
    for p in result.problems:
        print(f"  ! {p}")
    for name, run in result.runs.items():
        if run["status"] != "ok":
            print(f"  ! run {name}: {run['error']}")
    print(f"written: {out / RESULT_NAME}, {out / result.artifacts}")
    code = _render(out, ["write-up"], args.quiet)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return code


def _stored_report(args: argparse.Namespace) -> int:
    """``report --stored``: the write-up from a notebook's stored outputs and answers, nothing trained."""
    from harness.grading.result import write_result
    from harness.grading.stored_write_up import RESULT_NAME, stored_write_up
    from harness.submission.notebook_figures import checklist, run_labels

    started = time.perf_counter()
    path = Path(args.submission)
    if not path.exists():
        print(f"error: {path}: no such notebook", file=sys.stderr)
        return 2
    if not _is_notebook(path):
        print(
            f"error: {path} is not a notebook: --stored writes up a notebook's stored outputs; "
            "a folder submission is written up by `harness report` without --stored",
            file=sys.stderr,
        )
        return 2
    a = _assignment(args, path)
    out = _outputs(args, path)
    result = stored_write_up(path, a, out, args.name_pattern)
    write_result(out / RESULT_NAME, result)
    for p in result.problems:
        print(f"  ! {p}")
    missing = checklist(result.notebook.get("missing_figures", {}), run_labels(a))
    for line in missing:
        print(f"  - missing: {line}")
    print(f"written: {out / RESULT_NAME}, {out / result.artifacts}")
    code = _render(out, ["write-up"], args.quiet)
    print(f"done in {time.perf_counter() - started:.1f} s ({len(missing)} missing part(s), listed at the end)")
    return code


def cmd_render(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder}: no such reports folder", file=sys.stderr)
        return 2
    from harness.documents.render import documents_in

    found = documents_in(folder)
    if not found:
        print(f"error: {folder} has neither result.json (from grade) nor write-up.json (from report)", file=sys.stderr)
        return 2
    return _render(folder, args.document or found, args.quiet)


def cmd_export(args: argparse.Namespace) -> int:
    from harness.course.export import ExportError, export
    from harness.course.overrides import OverridesError

    a = load_assignment(args.assignment)
    try:
        done = export(Path(args.reports), a, args.format, Path(args.out) if args.out else None)
    except (ExportError, OverridesError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in done.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"written: {done.path} ({args.format}, {done.rows} submissions, {len(done.unscored)} without a score)")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from harness.course import similarity

    course, out = Path(args.course), Path(args.out)
    if not course.is_dir():
        what = "does not exist" if not course.exists() else "is a file"
        print(
            f"error: {course} {what}: give a course folder (the LMS download, or a folder of submissions)",
            file=sys.stderr,
        )
        return 2
    a = _assignment(args, course)
    started = time.perf_counter()
    try:  # an empty course is refused here: this verb loads no torch (no harness.course.batch)
        comparison = similarity.compare_course(course, a, out, args.name_pattern, workers=max(1, args.workers))
    except similarity.SimilarityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path, failures = similarity.publish(out, comparison, render=not args.no_report)
    summary = similarity.redraw_summary(out, comparison, a)
    for line in comparison.notes + similarity.describe(comparison) + failures:
        print(f"  - {line}")
    print(f"written: {path}")
    if summary:
        print(f"written: {summary}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from harness.submission.starter import write_starter

    a = load_assignment(args.assignment)
    try:
        written = write_starter(a, Path(args.submission), student=args.student or "", student_id=args.student_id or "")
    except (FileExistsError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"next: fill in the TODOs, then run `python -m harness check {args.submission}`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Grade and report the auto-encoder / beta-VAE homework on MNIST.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    p = verbs.add_parser(
        "reference",
        help="train (or read from cache) the reference AE, VAEs and beta search; print their metrics",
        description="Train the reference AE, the fixed-beta VAEs and a beta search from the assignment; "
        "results are cached (docs/reference.md).",
    )
    _common(p)
    p.add_argument("--force", action="store_true", help="retrain even when the cache has this reference")
    p.add_argument(
        "--band",
        action="store_true",
        help="build only the full-protocol beta search that judges tuned betas (the AE and the search runs, "
        "whatever --profile says); `--profile full` builds it too (docs/reference.md#the-beta-band)",
    )
    p.set_defaults(func=cmd_reference)

    p = verbs.add_parser(
        "check",
        help="run the fast checks (no training) on one submission and print a checklist",
        description="Run the checks that need no training on a submission, each unit of its code in the sandbox "
        "(docs/sandbox.md); write <out>/<id>/check.json (docs/result-schema.md). Exit 1 when an item fails.",
    )
    p.add_argument(
        "submission", help="a submission: a folder, or the handed-in notebook (.ipynb) (docs/submission-format.md)"
    )
    p.add_argument(
        "--assignment",
        help=f"bundled assignment or a .toml path (default: for a notebook, the handout it follows; else "
        f"{DEFAULT_ASSIGNMENT})",
    )
    p.add_argument(
        "--data", help=f"MNIST root with MNIST/raw/ (default: ${ENV_DATA}, else the user cache, downloading)"
    )
    p.add_argument("--cache", help="cache folder (student code never sees it)")
    _submission_options(p)
    _name_pattern_option(p)
    _isolation_option(p, "off (a warning names each protection not in force)")
    p.set_defaults(func=cmd_check)

    p = verbs.add_parser(
        "grade",
        help="grade a submission (or a folder of them) on every rubric item, training its models against the reference",
        description="Run the fast checks, train the submission's AE and VAEs with its own loops in the sandbox, "
        "and grade every rubric item against the reference trained under the same profile (built and cached "
        "first if needed). Writes <out>/<id>/result.json (docs/result-schema.md).",
    )
    p.add_argument(
        "submission",
        help="a submission (a folder, or the handed-in notebook .ipynb; docs/submission-format.md), or a folder of "
        "them (a course: sub-folders and/or notebooks as the LMS downloads them)",
    )
    _common(p)
    _submission_options(p)
    _name_pattern_option(p)
    p.add_argument("--train-timeout", type=float, help="seconds per training run (default: the assignment's)")
    p.add_argument(
        "--gradescope",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write Gradescope's results.json (default path: <out>/<id>/results.json)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the instructor report (report.html and report.pdf)")
    p.add_argument(
        "--no-band",
        action="store_true",
        help="do not build the full-protocol beta band when it is missing (tuned betas are then judged "
        "provisionally, and beta_tuning is needs_review)",
    )
    _isolation_option(p, "on for a folder of submissions (also checked by each Dask worker), off for one submission")
    p.add_argument(
        "--workers", type=int, default=1, help="a folder of submissions: how many to grade at a time (default: 1)"
    )
    p.add_argument(
        "--force", action="store_true", help="a folder of submissions: regrade those whose result is up to date"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--dask",
        action="store_true",
        help="a folder of submissions: grade on a local Dask cluster of --workers processes",
    )
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a folder of submissions: grade on the Dask cluster with this scheduler (docs/batch.md)",
    )
    p.set_defaults(func=cmd_grade)

    p = verbs.add_parser(
        "report",
        help="train your submission with your own code and write the write-up (HTML and PDF)",
        description="Train the AE and the VAEs (beta = 0, 10 and your tuned beta) with your own code in the sandbox "
        "and write <out>/<id>/write-up.html and write-up.pdf in the course's order (docs/reports.md); a notebook's "
        "own stored figures are shown beside the re-run ones. With --stored, nothing is trained. "
        "Exit 1 when the write-up could not be rendered (the HTML is kept when only the PDF failed).",
    )
    p.add_argument(
        "submission", help="your submission: a folder, or your executed notebook (.ipynb) (docs/submission-format.md)"
    )
    _common(p)
    _name_pattern_option(p)
    p.add_argument("--out", default="reports", help="reports folder (default: %(default)s)")
    p.add_argument("--memory", type=int, help="memory cap per run in MB (default: the assignment's)")
    p.add_argument("--train-timeout", type=float, help="seconds per training run (default: the assignment's)")
    _isolation_option(p, "off (a warning names each protection not in force)")
    p.add_argument(
        "--stored",
        action="store_true",
        help="a notebook: write the write-up from its stored figures and answers only, training nothing (seconds); "
        "it ends with a checklist of what the notebook does not hold",
    )
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser(
        "render",
        help="render a reports folder's documents again from its stored results (no training)",
        description="Re-render report.html/.pdf from result.json and write-up.html/.pdf from write-up.json, with "
        "their stored run artefacts (docs/reports.md). Exit 1 when a document could not be rendered.",
    )
    p.add_argument("folder", help="a submission's reports folder, e.g. reports/<id>")
    p.add_argument(
        "--document", action="append", choices=["report", "write-up"], help="only this document (repeatable)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_render)

    p = verbs.add_parser(
        "export",
        help="write a graded course's scores for a gradebook: canvas, gradescope or csv (overrides included)",
        description="Read the stored results of a graded course (with the instructor's overrides.csv merged in, as in "
        "grades.csv) and write them in a gradebook's import format (docs/batch.md#export). Nothing is graded. "
        "Exit 2 when there is nothing to export or overrides.csv is invalid.",
    )
    p.add_argument("reports", nargs="?", default="reports", help="the course's reports folder (default: %(default)s)")
    p.add_argument("--format", required=True, choices=["canvas", "gradescope", "csv"], help="the gradebook's format")
    p.add_argument("--out", metavar="FILE", help="where to write it (default: <reports>/export-<format>.csv)")
    p.add_argument(
        "--assignment",
        default=DEFAULT_ASSIGNMENT,
        help="the assignment the course was graded for: bundled name or .toml path (default: %(default)s)",
    )
    p.set_defaults(func=cmd_export)

    p = verbs.add_parser(
        "similarity",
        help="compare every pair of a course's hand-ins (code, answers, stored figures) and list the similar ones",
        description="Compare every pair of submissions of a course folder, and each against the harness's reference "
        "implementation, on the code the students wrote (the handout's lines left out), their answers and their "
        "stored figures; write <out>/similarity.csv and, where the course was graded into <out>, each flagged "
        "submission's result, report and summary.html. Flags for review only: no points change. Runs no student "
        "code (docs/batch.md#similarity). Exit 2 when the folder holds no submission.",
    )
    p.add_argument("course", help="the course folder: notebooks as the LMS downloads them and/or submission folders")
    p.add_argument("--out", default="reports", help="reports folder (default: %(default)s)")
    p.add_argument(
        "--assignment",
        help=f"bundled assignment or a .toml path (default: the handout of the course's notebooks, else "
        f"{DEFAULT_ASSIGNMENT})",
    )
    _name_pattern_option(p)
    p.add_argument("--workers", type=int, default=2, help="processes that read the notebooks (default: %(default)s)")
    p.add_argument("--no-report", action="store_true", help="do not draw the flagged submissions' reports again")
    p.set_defaults(func=cmd_similarity)

    p = verbs.add_parser(
        "init",
        help="write a starter submission (code with TODOs, answer sections, metadata)",
        description="Write submission.py, answers.md and submission.toml for a new submission; refuses to overwrite.",
    )
    p.add_argument("submission", help="the folder to create, e.g. submissions/<your id>")
    p.add_argument(
        "--assignment", default=DEFAULT_ASSIGNMENT, help="bundled assignment or a .toml path (default: %(default)s)"
    )
    p.add_argument("--student", help="your name")
    p.add_argument("--student-id", help="your student id")
    p.set_defaults(func=cmd_init)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors a verb reports in one line (exit 2): a bad assignment, data or device. The data
    and device errors exist only once their (torch) modules are loaded."""
    loaded = [
        (sys.modules.get(m), name)
        for m, name in (("harness.ml.data", "DataNotFound"), ("harness.ml.training", "DeviceError"))
    ]
    from harness.submission.notebook import NotebookError

    return (
        AssignmentError,
        NotebookError,
        *(getattr(module, name) for module, name in loaded if module is not None),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
