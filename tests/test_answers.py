"""The answer scorer: concepts with synonyms, negation, word limits, parsing answers.md."""

from __future__ import annotations

from harness.grading.items.answers import assess, check_answer, count_words, find_concept
from harness.submission.folder import parse_answers


def test_negated_synonym_does_not_count():
    assert find_concept("The samples are not noise at all.", ("noise",)) is None
    assert find_concept("They never look blurry", ("blurry",)) is None


def test_synonym_that_is_itself_a_negation_matches_as_written():
    assert find_concept("The samples do not look like digits.", ("not look like digits",)) == "not look like digits"


def test_matching_is_case_insensitive_on_word_boundaries_and_across_lines():
    assert find_concept("Reconstructions are\nGOOD here", ("reconstructions are good",)) == "reconstructions are good"
    assert find_concept("noiseless", ("noise",)) is None


def test_word_count_ignores_markdown_syntax():
    assert count_words("**bold** _words_ > quoted") == 3


def test_parse_answers_splits_sections_and_drops_quoted_prompt_and_todo():
    text = "# Answers\n\n## ae-samples\n> the prompt\nTODO: write\nMy answer here.\n\n## beta-0\nSecond.\n"
    assert parse_answers(text) == {"ae-samples": "My answer here.", "beta-0": "Second."}


def test_full_coverage_within_the_limit_earns_the_item_without_review(assignment):
    q = next(q for q in assignment.questions if q.id == "ae-samples")
    text = "The samples are noise: the latent distribution is arbitrary because nothing forces it to be normal."
    item, report = check_answer(assignment, q, {"ae-samples": text})
    assert report.missing == () and item.points == item.max_points and item.status == "pass"


def test_partial_coverage_is_a_suggestion_that_needs_review(assignment):
    q = next(q for q in assignment.questions if q.id == "ae-samples")
    item, _ = check_answer(assignment, q, {"ae-samples": "The samples are noise, as I expected from the plots."})
    assert 0 < item.points < item.max_points and item.status == "needs_review"
    assert any("an instructor reviews it" in e for e in item.evidence)


def test_off_topic_text_scores_zero_with_the_reason(assignment):
    q = next(q for q in assignment.questions if q.id == "beta-10")
    text = "I enjoyed the course a lot and the weather in the city was lovely during the whole semester."
    item, _ = check_answer(assignment, q, {"beta-10": text})
    assert (item.points, item.status) == (0, "fail") and item.evidence[0].startswith("off-topic")
    # On topic but without an expected concept: zero suggested, and an instructor looks at it.
    on_topic = "With beta at ten the reconstructions and the samples change a lot compared to the previous runs."
    item, _ = check_answer(assignment, q, {"beta-10": on_topic})
    assert item.points == 0 and item.status == "needs_review"


def test_partial_coverage_and_over_limit_penalty(assignment):
    q = next(q for q in assignment.questions if q.id == "ae-samples")
    item, _ = check_answer(assignment, q, {"ae-samples": "The samples are noise and nothing else " * 3})
    assert 0 < item.points < item.max_points
    long = "The samples are noise: the distribution is arbitrary. " * 30
    item, report = check_answer(assignment, q, {"ae-samples": long})
    assert report.words > q.word_limit and item.points == item.max_points * (1 - assignment.answers.over_limit_penalty)
    assert any("over the word limit" in e for e in item.evidence)


def test_missing_or_empty_answer_scores_zero_with_the_reason(assignment):
    q = next(q for q in assignment.questions if q.id == "beta-0")
    item, _ = check_answer(assignment, q, {})
    assert item.points == 0 and "no answer" in item.evidence[0]
    item, _ = check_answer(assignment, q, None)
    assert item.points == 0 and "answers.md is missing" in item.evidence[0]


def test_assess_reports_which_phrase_matched(assignment):
    q = next(q for q in assignment.questions if q.id == "beta-10")
    report = assess(q, "The posterior will collapse and outputs are blurry.")
    assert report.matches["posterior-collapse"] == "collapse" and "kl-dominates" in report.missing
