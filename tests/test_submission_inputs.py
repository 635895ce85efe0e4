"""Hostile or careless submission folders: links, huge files, other encodings, odd tuned_beta
values and keyword-list answers (docs/submission-format.md, "Limits and encodings").
Fast: the loader and the answer scorer only, on copies of the example."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.grading.items.answers import KEYWORD_EVIDENCE, check_answer, reads_as_keywords, score_answers
from harness.submission.detect import detect, load
from harness.submission.files import content_hash
from harness.submission.reading import MAX_ANSWERS_BYTES, MAX_CODE_BYTES, MAX_FOLDER_BYTES, detect_encoding, read_capped
from tests.helpers import EXAMPLE, EXAMPLE_TUNED, copy_example

SECRET = "PRIVATE-SOLUTION-7f3a"


def private_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "private" / "secret.md"
    path.parent.mkdir()
    path.write_text(text)
    return path


def link_in_place(folder: Path, name: str, target: Path) -> None:
    (folder / name).unlink()
    (folder / name).symlink_to(target)


def with_tuned(folder: Path, line: str) -> Path:
    toml = folder / "submission.toml"
    toml.write_text(toml.read_text().replace(EXAMPLE_TUNED, line))
    return folder


def test_a_folder_or_a_notebook_is_a_submission_and_anything_else_is_refused_clearly(tmp_path, assignment):
    assert detect(EXAMPLE, assignment) == "folder"
    with pytest.raises(FileNotFoundError, match="no such submission"):
        load(tmp_path / "gone", assignment)
    (tmp_path / "submission.py").write_text("x = 1\n")
    with pytest.raises(NotADirectoryError, match="or a folder holding submission.py, answers.md and"):
        detect(tmp_path / "submission.py", assignment)
    (tmp_path / "hw.ipynb").write_text("{}")
    assert detect(tmp_path / "hw.ipynb", assignment) == "notebook"
    assert detect(tmp_path, assignment) == "folder"  # it holds submission.py: the module wins
    (tmp_path / "submission.py").unlink()
    assert detect(tmp_path, assignment) == "notebook"


def test_a_folder_s_code_is_its_module_under_its_own_name(assignment):
    sub = load(EXAMPLE, assignment)
    assert (sub.kind, sub.label, sub.module) == ("folder", "submission.py", "submission.py")
    assert [c.label for c in sub.code] == ["submission.py"]
    assert sub.code[0].text == (EXAMPLE / "submission.py").read_text() and sub.code[0].text not in repr(sub)
    assert set(sub.files) == {Path("submission.py"), Path("answers.md"), Path("submission.toml")}


def test_symlinked_answers_are_not_read_and_earn_no_points(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    secret_answers = "".join(
        f"## {q.id}\n{SECRET} {(EXAMPLE / 'answers.md').read_text()}\n" for q in assignment.questions
    )
    link_in_place(folder, "answers.md", private_file(tmp_path, secret_answers))
    sub = load(folder, assignment)
    assert SECRET not in repr(sub) and sub.answers == {}
    assert any(p.startswith("answers.md is a symbolic link: the harness does not follow links") for p in sub.problems)
    items, reports = score_answers(assignment, sub)
    assert all(i.points == 0 for i in items.values()) and all(SECRET not in r["text"] for r in reports.values())


def test_symlinked_metadata_is_read_as_missing(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    link_in_place(folder, "submission.toml", private_file(tmp_path, f'student = "{SECRET}"\ntuned_beta = 1e-4\n'))
    sub = load(folder, assignment)
    assert SECRET not in repr(sub) and (sub.student, sub.tuned_beta) == ("", None)
    assert any(p.startswith("submission.toml is a symbolic link") for p in sub.problems)


def test_symlinked_code_earns_no_code_items(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    link_in_place(folder, "submission.py", (EXAMPLE / "submission.py").resolve())
    sub = load(folder, assignment)
    assert not sub.has_code
    assert any(
        p.startswith("submission.py is a symbolic link") and "code items earn no points" in p for p in sub.problems
    )


def test_a_file_behind_a_symlinked_folder_is_not_read(tmp_path):
    folder = copy_example(tmp_path / "s")
    (folder / "notes").symlink_to(private_file(tmp_path, SECRET).parent)
    read = read_capped(folder, "notes/secret.md", MAX_ANSWERS_BYTES)
    assert (read.data, read.why) == (None, "link")


def test_other_links_are_named_in_one_problem_line(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    (folder / "data").symlink_to(tmp_path)
    (folder / "notes.md").symlink_to(private_file(tmp_path, SECRET))
    sub = load(folder, assignment)
    assert [p for p in sub.problems if "symbolic link" in p] == [
        "skipped 2 symbolic link(s): data, notes.md: the harness does not follow links in a submission; "
        "hand in the files themselves"
    ]
    assert sub.has_code and len(sub.answers) == len(assignment.questions)


def test_a_symlinked_submission_folder_is_read_without_a_problem(tmp_path, assignment):
    (tmp_path / "link").symlink_to(copy_example(tmp_path / "s"))
    sub = load(tmp_path / "link", assignment)
    assert sub.problems == () and sub.has_code and sub.id == "link"


def test_oversized_answers_are_not_read_and_reach_no_report(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    answers = (folder / "answers.md").read_text()
    (folder / "answers.md").write_text(answers + SECRET * (5 * 2**20 // len(SECRET) - len(answers) // len(SECRET)))
    sub = load(folder, assignment)
    assert sub.answers == {} and SECRET not in repr(sub)
    assert "answers.md is 5.0 MB; the limit is 256 KB: the answer items earn no points" in sub.problems
    items, reports = score_answers(assignment, sub)
    assert all(i.points == 0 for i in items.values()) and all(r["text"] == "" for r in reports.values())


def test_a_huge_answers_file_is_never_read_whole(tmp_path):
    folder = copy_example(tmp_path / "s")
    with open(folder / "answers.md", "r+b") as f:
        f.truncate(64 * 2**30)  # sparse: reading it whole would take minutes and 64 GB
    started = time.perf_counter()
    read = read_capped(folder, "answers.md", MAX_ANSWERS_BYTES)
    assert (read.data, read.why, read.size) == (None, "too large", 64 * 2**30)
    assert time.perf_counter() - started < 1


def test_oversized_code_earns_no_code_items(tmp_path, assignment):
    folder = copy_example(tmp_path / "s", append="#" * MAX_CODE_BYTES)
    sub = load(folder, assignment)
    assert not sub.has_code and any(
        p.startswith("submission.py is more than 2.0 MB; the limit is 2.0 MB") for p in sub.problems
    )


def test_an_oversized_folder_earns_no_code_items_and_is_hashed_by_sizes(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    with open(folder / "checkpoint.bin", "wb") as f:
        f.truncate(MAX_FOLDER_BYTES + 1)  # sparse
    started = time.perf_counter()
    sub = load(folder, assignment)
    assert time.perf_counter() - started < 5
    assert not sub.has_code and any(
        p.startswith("the submission folder holds more than 200.0 MB; the limit is 200.0 MB") for p in sub.problems
    )
    with open(folder / "checkpoint.bin", "r+b") as f:
        f.write(b"changed bytes, same size")
    assert content_hash(folder) == sub.content_hash


def test_latin1_answers_are_decoded_and_the_encoding_named(tmp_path, assignment):
    folder = copy_example(tmp_path / "s", answers=[("Decoding 16 random", "Décodage: decoding 16 random")])
    (folder / "answers.md").write_bytes((folder / "answers.md").read_text().encode("latin-1"))
    sub = load(folder, assignment)
    assert sub.answers["ae-samples"].startswith("Décodage: decoding 16 random")
    assert any(p.startswith("answers.md is not UTF-8: read as Windows-1252 (cp1252)") for p in sub.problems)


def test_bytes_that_are_not_cp1252_fall_back_to_latin1():
    assert detect_encoding("café".encode("latin-1") + b"\x81") == "latin-1"


@pytest.mark.parametrize(
    "encoding, named",
    [
        ("utf-16", "UTF-16"),
        ("utf-16-le", "UTF-16 (little-endian"),
        ("utf-16-be", "UTF-16 (big-endian"),
        ("utf-32", "UTF-32"),
    ],
)
def test_utf16_and_utf32_answers_are_decoded_and_named(tmp_path, assignment, encoding, named):
    folder = copy_example(tmp_path / "s")
    text = (folder / "answers.md").read_text()
    (folder / "answers.md").write_bytes(text.encode(encoding))
    sub = load(folder, assignment)
    assert sub.answers == load(EXAMPLE, assignment).answers
    assert any(p.startswith(f"answers.md is not UTF-8: read as {named}") for p in sub.problems)


def test_utf8_with_a_byte_order_mark_needs_no_problem(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    for name in ("answers.md", "submission.toml"):
        (folder / name).write_bytes((folder / name).read_text().encode("utf-8-sig"))
    sub = load(folder, assignment)
    assert sub.problems == () and sub.tuned_beta == 1e-4 and sub.answers == load(EXAMPLE, assignment).answers


def test_nul_characters_are_removed_with_a_problem(tmp_path, assignment):
    folder = copy_example(tmp_path / "s", answers=[("gives mostly noise", "gives mostly\x00 noise")])
    sub = load(folder, assignment)
    assert "\x00" not in "".join(sub.answers.values()) and "gives mostly noise" in sub.answers["ae-samples"]
    assert any(p.startswith("answers.md contains 1 NUL character(s), removed") for p in sub.problems)


def test_cp1252_metadata_is_decoded_before_parsing(tmp_path, assignment):
    folder = copy_example(tmp_path / "s")
    toml = folder / "submission.toml"
    toml.write_bytes(toml.read_text().replace("Ada Example", "José Müller").encode("cp1252"))
    sub = load(folder, assignment)
    assert sub.student == "José Müller" and sub.tuned_beta == 1e-4
    assert any(p.startswith("submission.toml is not UTF-8: read as Windows-1252") for p in sub.problems)


@pytest.mark.parametrize(
    "value, shown",
    [
        ("1e308", "1e+308"),
        ("-inf", "-inf"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("0", "0"),
        ("-1e-4", "-0.0001"),
        ("1e-13", "1e-13"),
        ("true", "True"),
        ('"1e-4"', "'1e-4'"),
        ("[1e-4]", "[0.0001]"),
    ],
)
def test_tuned_beta_outside_the_range_is_rejected_with_range_and_value(tmp_path, assignment, value, shown):
    sub = load(with_tuned(copy_example(tmp_path / "s"), f"tuned_beta = {value}"), assignment)
    assert sub.tuned_beta is None
    expected = (
        f"submission.toml: `tuned_beta` must be a number in [1e-12, 1e6] in your own loss convention, got {shown}"
    )
    assert expected in sub.problems


@pytest.mark.parametrize("value", ["4.0", "1e6", "1e-12", "3"])
def test_tuned_beta_inside_the_range_is_accepted(tmp_path, assignment, value):
    sub = load(with_tuned(copy_example(tmp_path / "s"), f"tuned_beta = {value}"), assignment)
    assert sub.tuned_beta == float(value) and sub.problems == ()


def test_keyword_list_answer_needs_review_and_not_full_points(assignment):
    q = next(q for q in assignment.questions if q.id == "ae-samples")
    for text in (
        "- noise\n- latent distribution arbitrary\n- nothing forces normal",
        "noise, arbitrary latent distribution; nothing forces normal",
    ):
        item, report = check_answer(assignment, q, {"ae-samples": text})
        assert report.missing == ()  # every concept's keyword is there...
        assert item.status == "needs_review" and item.points <= item.max_points / 2  # ...but no sentence says it
        assert any(e.startswith(KEYWORD_EVIDENCE) for e in item.evidence)


def test_sentence_answer_with_the_same_concepts_still_passes(assignment):
    q = next(q for q in assignment.questions if q.id == "ae-samples")
    text = "The samples are noise, because the latent distribution is arbitrary: nothing forces it to be normal."
    item, _ = check_answer(assignment, q, {"ae-samples": text})
    assert (item.status, item.points) == ("pass", item.max_points)


def test_a_sentence_that_lists_adjectives_is_not_a_keyword_list():
    assert not reads_as_keywords("Samples are blurry, grey, noisy, broken, and unrealistic.")


def test_the_example_answers_are_sentences(assignment):
    answers = load(EXAMPLE, assignment).answers
    assert answers and not any(reads_as_keywords(text) for text in answers.values())
