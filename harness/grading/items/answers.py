"""Written answers: presence, word count against the limit, coverage of expected concepts.

Transparent and deterministic: an answer covers a concept when it contains one of
the concept's synonyms (case-insensitive, on word boundaries) that is not negated
("the samples are not noise" does not count as "noise"). A synonym that itself
starts with a negation ("not digits") is matched as written. The suggested score
is the item's points times the share of concepts covered, less the over-limit
penalty. The scorer is confident about an answer that covers every concept within the limit
(``pass``) and about an empty or off-topic one (``fail``: 0 points, with the reason); anything
else keeps ``needs_review`` with the suggested score until an instructor confirms it.

An answer that reads as a list of keywords rather than sentences (:func:`reads_as_keywords`)
is never confident: it is ``needs_review``, its suggestion capped at KEYWORD_LIST_MAX_SHARE of
the item, because matching synonyms cannot tell whether keywords make an explanation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.config.assignment import Assignment, Question
from harness.grading.rubric import ItemResult, round_points
from harness.submission.contents import Submission

NEGATIONS = {
    "not",
    "no",
    "never",
    "without",
    "hardly",
    "nor",
    "neither",
    "cannot",
    "isn't",
    "aren't",
    "don't",
    "doesn't",
    "didn't",
    "won't",
    "wasn't",
    "weren't",
    "can't",
    "couldn't",
    "shouldn't",
}
NEGATION_WINDOW = 3
MIN_TOPIC_WORDS = 2
STOPWORDS = {
    "the",
    "and",
    "are",
    "for",
    "you",
    "your",
    "with",
    "this",
    "that",
    "what",
    "how",
    "why",
    "when",
    "can",
    "does",
    "into",
    "from",
    "have",
    "has",
    "will",
    "would",
    "not",
    "too",
    "its",
    "their",
    "them",
    "they",
    "these",
    "those",
    "which",
    "about",
    "like",
    "same",
    "different",
    "look",
    "one",
    "all",
    "more",
    "much",
}
WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
MARKDOWN = re.compile(r"[#*_>`|\[\]()!]")
# Keyword lists. A piece is a line (list marker dropped) cut at , ; : and sentence ends; it is a
# sentence when it has SENTENCE_MIN_WORDS words or a verb-like word, else a keyword piece.
LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE)
PIECE_BREAK = re.compile(r"[,;:\n]|[.!?](?=\s|$)")
SENTENCE_MIN_WORDS = 4
VERB_LIKE = {
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "should",
    "must",
    "may",
    "might",
    "because",
    "since",
    "so",
    "therefore",
    "which",
    "when",
    "if",
    "while",
    "isn't",
    "aren't",
    "doesn't",
    "don't",
    "can't",
}
MIN_KEYWORD_PIECES = 3  # a keyword list has at least this many keyword pieces...
MAX_SENTENCE_WORD_SHARE = 0.25  # ...and its sentences hold at most this share of its words
KEYWORD_LIST_MAX_SHARE = 0.5  # the most a keyword list is suggested, as a share of the item
KEYWORD_EVIDENCE = "the answer reads as a list of keywords, not sentences: a reader must judge it"


@dataclass(frozen=True)
class AnswerReport:
    question: str
    words: int
    limit: int
    found: tuple[str, ...]
    missing: tuple[str, ...]
    matches: dict[str, str]  # concept -> the phrase that matched

    def to_json(self) -> dict:
        return {
            "words": self.words,
            "limit": self.limit,
            "found": list(self.found),
            "missing": list(self.missing),
            "matches": self.matches,
        }


def count_words(text: str) -> int:
    return len(MARKDOWN.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


def _negated(tokens: list[str], start: int) -> bool:
    window = tokens[max(0, start - NEGATION_WINDOW) : start]
    return any(t in NEGATIONS or t.endswith("n't") for t in window)


def find_concept(text: str, synonyms: tuple[str, ...]) -> str | None:
    """The first synonym present and not negated, else None."""
    tokens = _tokens(text)
    for synonym in synonyms:
        phrase = _tokens(synonym)
        if not phrase:
            continue
        self_negated = phrase[0] in NEGATIONS
        for i in range(len(tokens) - len(phrase) + 1):
            if tokens[i : i + len(phrase)] == phrase and (self_negated or not _negated(tokens, i)):
                return synonym
    return None


def assess(q: Question, text: str) -> AnswerReport:
    matches = {}
    for concept in q.concepts:
        hit = find_concept(text, concept.synonyms)
        if hit is not None:
            matches[concept.id] = hit
    found = tuple(c.id for c in q.concepts if c.id in matches)
    missing = tuple(c.id for c in q.concepts if c.id not in matches)
    return AnswerReport(q.id, count_words(text), q.word_limit, found, missing, matches)


def answer_pieces(text: str) -> list[list[str]]:
    """The answer's pieces as token lists: lines without list markers, cut at , ; : and sentence ends."""
    pieces = (_tokens(piece) for piece in PIECE_BREAK.split(LIST_MARKER.sub("", text)))
    return [p for p in pieces if p]


def is_sentence(tokens: list[str]) -> bool:
    return len(tokens) >= SENTENCE_MIN_WORDS or any(t.replace("’", "'") in VERB_LIKE for t in tokens)


def reads_as_keywords(text: str) -> bool:
    """Whether an answer is a list of keywords rather than sentences, by a simple heuristic (a
    finite verb is not detectable without a parser): at least MIN_KEYWORD_PIECES short
    verb-less pieces, and sentences hold at most MAX_SENTENCE_WORD_SHARE of the words. So
    "- noise\n- arbitrary latent" is one, "Samples are blurry, grey, noisy and broken." is not."""
    pieces = answer_pieces(text)
    keywords = [p for p in pieces if not is_sentence(p)]
    words = sum(len(p) for p in pieces)
    sentence_words = words - sum(len(p) for p in keywords)
    return len(keywords) >= MIN_KEYWORD_PIECES and sentence_words <= MAX_SENTENCE_WORD_SHARE * words


def check_answer(
    a: Assignment, q: Question, answers: dict[str, str] | None, unread: str = ""
) -> tuple[ItemResult | None, AnswerReport | None]:
    """The answer item's suggested score and the coverage report; the item is None for a
    question that earns no rubric item of its own (no ``rubric_item`` in the config).
    ``answers`` is None when the file could not be read, ``unread`` says why."""
    if answers is None:
        if not q.rubric_item:
            return None, None
        item = a.item(q.rubric_item)
        why = unread or f"{a.submission.answers} is missing"
        return ItemResult(item.id, item.title, 0.0, item.points, "fail", [why]), None
    text = answers.get(q.id, "")
    report = assess(q, text)
    if not q.rubric_item:
        return None, report
    item = a.item(q.rubric_item)
    title, max_points = item.title, item.points
    if report.words < a.answers.min_words:
        evidence = [f"no answer under `## {q.id}` in answers.md" if not text else f"only {report.words} words"]
        return ItemResult(q.rubric_item, title, 0.0, max_points, "fail", evidence, report.to_json()), report
    share = len(report.found) / len(q.concepts) if q.concepts else 1.0
    on_topic = topic_words(a, text) if q.concepts and not report.found else set()
    if q.concepts and not report.found and len(on_topic) < MIN_TOPIC_WORDS:
        evidence = [
            f"off-topic: {report.words} words, none about the question (no expected concept, fewer than "
            f"{MIN_TOPIC_WORDS} of the assignment's words: {', '.join(sorted(on_topic)) or 'none'})"
        ]
        return ItemResult(q.rubric_item, title, 0.0, max_points, "fail", evidence, report.to_json()), report
    evidence = [f"{report.words} words (limit {q.word_limit})"]
    if report.found:
        evidence.append("covers: " + ", ".join(f"{c} ('{report.matches[c]}')" for c in report.found))
    if report.missing:
        evidence.append("not found: " + ", ".join(report.missing))
    penalty = 0.0
    if report.words > q.word_limit:
        penalty = a.answers.over_limit_penalty
        evidence.append(f"over the word limit by {report.words - q.word_limit} words: -{penalty:.0%} of the item")
    points = round_points(max(0.0, max_points * (share - penalty)), 0.5)
    if reads_as_keywords(text):
        points = min(points, round_points(max_points * KEYWORD_LIST_MAX_SHARE, 0.5))
        evidence.append(f"{KEYWORD_EVIDENCE} (suggested at most {KEYWORD_LIST_MAX_SHARE:.0%} of the item)")
        return ItemResult(q.rubric_item, title, points, max_points, "needs_review", evidence, report.to_json()), report
    if share >= 1 and not penalty:  # every concept, within the limit: confident (an override still wins)
        return ItemResult(q.rubric_item, title, points, max_points, "pass", evidence, report.to_json()), report
    evidence.append("suggested score: not every expected concept was found, so an instructor reviews it")
    return ItemResult(q.rubric_item, title, points, max_points, "needs_review", evidence, report.to_json()), report


def topic_words(a: Assignment, text: str) -> set[str]:
    """Content words the answer shares with the assignment's prompts and concept synonyms
    (plural "s" dropped, so "reconstructions" meets "reconstruction")."""
    stem = lambda t: t[:-1] if len(t) > 3 and t.endswith("s") else t  # noqa: E731
    vocabulary = {stem(t) for q in a.questions for t in _tokens(q.prompt)}
    vocabulary |= {stem(t) for q in a.questions for c in q.concepts for s in c.synonyms for t in _tokens(s)}
    return {stem(t) for t in _tokens(text) if stem(t) in vocabulary and t not in STOPWORDS and len(t) > 2}


def score_answers(a: Assignment, sub: Submission) -> tuple[dict[str, ItemResult], dict[str, dict]]:
    """Each question's item (by rubric item id) and its concept report (by question id)."""
    answers = None if sub.answers_unread else sub.answers
    items, reports = {}, {}
    for q in a.questions:
        item, report = check_answer(a, q, answers, sub.answers_unread)
        text = (answers or {}).get(q.id, "")
        # the documents quote each question and answer from the result alone
        reports[q.id] = {
            "prompt": q.prompt,
            "text": text,
            "section": q.section,
            **(report.to_json() if report else {"words": 0, "limit": q.word_limit}),
        }
        if item is not None:
            items[q.rubric_item] = item
    return items, reports
