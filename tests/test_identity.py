"""Whose notebook a file is, from its name (harness.submission.identity): Canvas's download names,
names that do not match, custom patterns and their refusals, safe ids and duplicate files."""

from __future__ import annotations

import re

import pytest

from harness.submission.identity import (
    CANVAS_PATTERN,
    MAX_ID_CHARS,
    Identity,
    compile_pattern,
    duplicates,
    identity_from_name,
    safe_id,
)

CUSTOM = r"(?P<student_id>\d+)-(?P<student>\w+)\.ipynb"

# --------------------------------------------------------------------------- Canvas names


def test_a_plain_canvas_name_gives_the_student_their_id_and_the_original_name():
    got = identity_from_name("doejane_12345_678901_hw1.ipynb")
    assert got == Identity(
        id="12345",
        student="doejane",
        student_id="12345",
        late=False,
        original="hw1.ipynb",
        file_name="doejane_12345_678901_hw1.ipynb",
        file_id="678901",
    )
    assert got.matched


def test_a_late_canvas_name_is_marked_late_and_keeps_the_same_student():
    got = identity_from_name("doejane_late_12345_678901_hw1.ipynb")
    assert (got.id, got.student, got.student_id, got.late, got.original) == (
        "12345",
        "doejane",
        "12345",
        True,
        "hw1.ipynb",
    )


def test_a_resubmitted_canvas_file_keeps_its_dash_number_in_the_original_name():
    got = identity_from_name("doejane_12345_678902_hw1-1.ipynb")
    assert (got.student_id, got.file_id, got.original) == ("12345", "678902", "hw1-1.ipynb")


def test_digits_and_underscores_in_the_original_name_do_not_shift_the_ids():
    got = identity_from_name("doejane_12345_678901_VAE_hw_2_2024_v3.ipynb")
    assert (got.student, got.student_id, got.file_id, got.original) == (
        "doejane",
        "12345",
        "678901",
        "VAE_hw_2_2024_v3.ipynb",
    )


def test_an_upper_case_extension_still_matches_the_canvas_pattern():
    got = identity_from_name("doejane_12345_678901_HW1.IPYNB")
    assert (got.id, got.original) == ("12345", "HW1.IPYNB")


def test_only_the_last_path_component_is_read():
    got = identity_from_name("course/downloads/doejane_12345_678901_hw1.ipynb")
    assert (got.id, got.file_name) == ("12345", "doejane_12345_678901_hw1.ipynb")


def test_the_canvas_pattern_is_a_valid_user_pattern():
    assert compile_pattern(CANVAS_PATTERN).groupindex.keys() >= {"student", "student_id", "late", "original"}


# --------------------------------------------------------------------------- names that do not match


@pytest.mark.parametrize("name", ["hw1.ipynb", "jane_hw1.ipynb", "doejane_abc_678901_hw1.ipynb", "doejane_12345.ipynb"])
def test_a_name_that_does_not_match_gives_the_stem_as_id_and_no_student(name):
    got = identity_from_name(name)
    assert got.id == name.removesuffix(".ipynb")
    assert (got.student, got.student_id, got.late, got.file_id) == ("", "", False, "")
    assert (got.original, got.file_name) == (name, name)
    assert not got.matched


# --------------------------------------------------------------------------- custom patterns


def test_a_custom_pattern_reads_its_own_groups():
    got = identity_from_name("20231234-ada.ipynb", CUSTOM)
    assert (got.id, got.student, got.student_id, got.late, got.original) == (
        "20231234",
        "ada",
        "20231234",
        False,
        "20231234-ada.ipynb",  # no `original` group: the whole name
    )


def test_a_custom_pattern_must_match_the_whole_name():
    got = identity_from_name("20231234-ada.ipynb.bak", CUSTOM)
    assert not got.matched and got.id == "20231234-ada.ipynb"


def test_a_compiled_pattern_is_accepted_as_well_as_its_text():
    assert identity_from_name("7-bo.ipynb", re.compile(CUSTOM)).student_id == "7"


def test_a_pattern_with_only_a_student_group_ids_by_the_student_so_their_files_share_one_id():
    pattern = r"(?P<student>[a-z]+)_(?P<original>.+)"
    first, second = identity_from_name("ada_hw1.ipynb", pattern), identity_from_name("ada_hw1-1.ipynb", pattern)
    assert first.id == second.id == "ada"


def test_a_pattern_that_does_not_compile_is_refused_naming_the_pattern_and_the_error():
    message = r"the file-name pattern `(?P<student_id>\d+` is not a valid regular expression: missing ), "
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_pattern(r"(?P<student_id>\d+")


def test_a_pattern_without_an_identity_group_is_refused():
    with pytest.raises(ValueError, match="names no `student` or `student_id` group"):
        compile_pattern(r"(?P<file_id>\d+)_.*\.ipynb")
    with pytest.raises(ValueError, match="names no `student` or `student_id` group"):
        compile_pattern(r"(\d+)_.*")  # unnamed groups identify no one either


def test_a_pattern_with_a_misspelt_group_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown group\(s\) lat, studnet; the groups it may name are student, "):
        compile_pattern(r"(?P<student_id>\d+)_(?P<lat>late)?(?P<studnet>\w+)")


def test_an_invalid_compiled_pattern_is_refused_too():
    with pytest.raises(ValueError, match="names no `student`"):
        identity_from_name("x.ipynb", re.compile(r"(?P<file_id>.+)"))


# --------------------------------------------------------------------------- safe ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12345", "12345"),
        ("../../etc/passwd", "__._etc_passwd"),
        ("..", "_"),
        (".hidden", "_hidden"),
        ("a/b\\c", "a_b_c"),
        ("jane doe", "jane_doe"),
        ("müller", "m_ller"),
        ("a..b", "a.b"),
        ("", "_"),
        ("  ", "_"),
        ("nul\x00byte", "nul_byte"),
    ],
)
def test_safe_id_gives_one_plain_folder_name(text, expected):
    assert safe_id(text) == expected


def test_safe_id_is_cut_to_its_maximum_length():
    assert safe_id("x" * 500) == "x" * MAX_ID_CHARS


def test_an_unsafe_student_id_from_a_custom_pattern_becomes_a_safe_id():
    got = identity_from_name("..%2F..%2Fetc_hw.ipynb", r"(?P<student_id>[^_]+)_(?P<original>.+)")
    assert got.student_id == "..%2F..%2Fetc"  # the name as found, for the report
    assert got.id == "__2F._2Fetc"
    assert "/" not in got.id and not got.id.startswith(".") and ".." not in got.id


def test_a_hidden_file_name_gets_a_safe_id():
    assert identity_from_name(".ipynb").id == "_ipynb"


# --------------------------------------------------------------------------- duplicates


def test_two_files_of_one_student_are_reported_earliest_upload_first():
    names = [
        "doejane_12345_678910_hw1-1.ipynb",
        "roebob_222_678905_hw1.ipynb",
        "doejane_late_12345_99_hw1.ipynb",  # a smaller file id: uploaded earlier, whatever the listing order
    ]
    assert duplicates(identity_from_name(n) for n in names) == {
        "12345": ["doejane_late_12345_99_hw1.ipynb", "doejane_12345_678910_hw1-1.ipynb"]
    }


def test_no_duplicates_when_every_student_has_one_file():
    names = ["doejane_12345_1_hw1.ipynb", "roebob_222_2_hw1.ipynb", "hw1.ipynb"]
    assert duplicates(identity_from_name(n) for n in names) == {}


def test_ids_that_collide_after_being_made_safe_are_reported():
    pattern = r"(?P<student_id>[^_]+)_(?P<original>.+)"
    got = duplicates(identity_from_name(n, pattern) for n in ["a b_hw.ipynb", "a?b_hw.ipynb"])
    assert got == {"a_b": ["a b_hw.ipynb", "a?b_hw.ipynb"]}
