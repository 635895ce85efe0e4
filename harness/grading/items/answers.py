"""Written answers: presence, word count against the limit, coverage of expected concepts.

Transparent and deterministic, with no model: each ``[[questions]]`` concept lists phrases
(docs/assignment-format.md) and the scorer reads the answer clause by clause.

- Words match on their stems (Snowball English, plus comparatives: "blurred" meets "blurry",
  "smoother" meets "smooth"). A synonym's words come in order with at most SYNONYM_GAP other
  words between them, a paraphrase's anywhere in one clause.
- A negation ("not", "never", "...n't", "rather than") counts for a phrase within
  NEGATION_WINDOW words before it in its own clause (clauses end at punctuation and at words
  such as "but", "while", "because", "unlike"). A negated synonym denies the concept, a negated
  opposite ("not realistic") shows it. A phrase that starts with a negation is read as written.
- Topics (a question's ``topics``: the AE and the VAE, the reconstructions and the samples)
  say whom a phrase is about: the topics named before it in its clause, else after it, else the
  last ones named. A concept with ``about`` counts only phrases said of its topics or of none, so
  a negation aimed at the AE never cancels the VAE's concept. "A isn't as X as B" says B is X.
  A clause that only names a topic ("the VAE's are", "AE paths don't", "unlike the AE's")
  repeats its neighbour's phrases for that topic (flipped after "unlike").
- Credit per concept: 1 when a phrase shows it, 0.5 when only a ``vague`` one does (a bare
  "good"), 0 when the answer both shows and denies it (a self-contradiction; a hedged denial,
  "a few look like digits", does not count) or only denies it.

The suggested score is the item's points times the weighted share of credit, less the
over-limit penalty, in 0.5 steps. An item scored with code (a part named ``answer``) uses that
part's points. The scorer is confident about an answer that earns every concept within the
limit (``pass``) and about an empty or off-topic one (``fail``: 0 points, with the reason);
anything else keeps ``needs_review`` with the suggested score until an instructor confirms it.

An answer that reads as a list of keywords rather than sentences (:func:`reads_as_keywords`)
is never confident: it is ``needs_review`` and each idea earns at most KEYWORD_LIST_MAX_SHARE of
its points, because matching phrases cannot tell whether keywords make an explanation.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import snowballstemmer

from harness.config.assignment import Assignment, Concept, Question
from harness.grading.rubric import ItemResult
from harness.submission.contents import Submission

NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "hardly",
        "barely",
        "nor",
        "neither",
        "cannot",
        "nothing",
        "none",
        "ratherthan",  # "rather than" and "instead of", joined by _normalise
    }
)
# "nothing but noise", "not only blurry": the word after cancels the negation.
NEGATION_CANCELLED_BY = frozenset({"but", "else", "only", "just"})
NEGATION_WINDOW = 5  # words before a phrase, in its clause
SCOPE_ENDS = frozenset({"and"})  # a negation before one of these does not reach past it
SYNONYM_GAP = 2  # other words allowed between a synonym's words
# Words in a clause before an opposite that make it no claim ("a few might look like digits").
HEDGES = frozenset(
    {"few", "some", "vaguely", "might", "may", "maybe", "perhaps", "occasionally", "sometimes", "slightly", "somewhat"}
)
ARTICLES = frozenset({"a", "an", "the"})
# A clause starts at one of these words as well as at punctuation.
CLAUSE_WORDS = frozenset(
    {"but", "while", "whereas", "although", "though", "however", "unlike", "because", "since", "which", "where"}
)
NOT_COMPARING = frozenset({"well", "such", "same"})  # "as well as", "such as", "the same as"
LESS = frozenset({"less", "fewer"})
# A clause of a topic and only these words repeats its neighbour's phrases ("the VAE's are").
ELLIPSIS_WORDS = frozenset(
    {
        *("is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will", "would"),
        *("not", "no", "too", "also", "either", "so", "as", "well", "one", "ones", "for", "in", "of", "case"),
        *("path", "paths", "interpolation", "interpolations", "image", "images", "output", "outputs", "unlike"),
        *("while", "whereas", "but", "and", "though", "although"),
    }
)
NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "ten": "10"}
STEM_EXCEPTIONS = {"identity": "identity", "identities": "identity"}  # Snowball: identity = identical
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
WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
MARKDOWN = re.compile(r"[#*_>`|\[\]()!]")
SENTENCE_BREAK = re.compile(r"[.!?]+(?=\s|$)|\n\s*\n|\n\s*(?:[-*+•]|\d+[.)])\s+")
CLAUSE_BREAK = re.compile(r"[,;:()\[\]{}\"]|\s[-–—]+\s|-+>|→|=>")
# A short formula such as N(0, I) or q(z|x) keeps its letters as words: "n 0 i".
FORMULA = re.compile(r"\b([a-z]{1,3})\(([^()\n]{1,12})\)")
ABBREVIATION = re.compile(r"\b(i\.e|e\.g|etc|vs|cf|approx)\.")
# Keyword lists. A piece is a line (list marker dropped) cut at , ; : arrows and sentence ends; it is
# a sentence when it has SENTENCE_MIN_WORDS words or a verb-like word, else a keyword piece.
LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE)
PIECE_BREAK = re.compile(r"[,;:\n]|[.!?](?=\s|$)|-+>|→|=>")
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
KEYWORD_LIST_MAX_SHARE = 0.5  # the most each idea of a keyword list earns, as a share of its points
KEYWORD_EVIDENCE = "the answer reads as a list of keywords, not sentences: a reader must judge it"
VAGUE_CREDIT = 0.5  # a concept shown only by a vague phrase ("good", "smoother", "better")
POINT_STEP = 0.5


# --------------------------------------------------------------------------- words


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A word's canonical stem: Snowball English after British "-ise" spellings become "-ize";
    then a final "i" is dropped and a doubled final consonant collapsed, so "blurry", "blurred"
    and "blur" meet, as do "noisy" and "noise". Number words become digits ("zero" is "0")."""
    word = word.replace("’", "'").removesuffix("'s").replace("'", "").replace("-", "")
    if word in STEM_EXCEPTIONS:
        return STEM_EXCEPTIONS[word]
    word = NUMBER_WORDS.get(word, word)
    word = re.sub(r"(al|ar|an|im|er)is(e|ed|es|ing|ation|ations)$", r"\1iz\2", word)
    # a fresh stemmer per word (the cache makes it rare): Snowball stemmers hold state while they run
    s = snowballstemmer.stemmer("english").stemWord(word)
    if len(s) > 3 and s.endswith("i"):
        s = s[:-1]
    if len(s) > 3 and s[-1] == s[-2] and s[-1] not in "aeioulsz":
        s = s[:-1]
    return s


def comparative_bases(word: str) -> tuple[str, ...]:
    """The positive forms a comparative or superlative may come from ("smoother": "smooth",
    "blurrier": "blurry", "bigger": "big", "closer": "close"); () for other words."""
    for suffix in ("est", "er"):
        root = word.removesuffix(suffix)
        if root != word and len(root) >= 3:
            bases = [root, root + "e"]
            if root.endswith("i"):
                bases.append(root[:-1] + "y")
            if len(root) >= 4 and root[-1] == root[-2]:
                bases.append(root[:-1])
            return tuple(bases)
    return ()


@dataclass(frozen=True)
class Token:
    word: str  # lower case, apostrophes as '
    keys: frozenset[str]  # the stems a phrase word may have to match it


@functools.lru_cache(maxsize=65536)
def make_token(word: str) -> Token:
    keys = {stem(word)} | {stem(b) for b in comparative_bases(word.replace("-", ""))}
    return Token(word, frozenset(keys))


def is_negation(tokens: tuple[Token, ...], i: int) -> bool:
    word = tokens[i].word
    if not (word in NEGATIONS or word.endswith("n't")):
        return False
    return i + 1 >= len(tokens) or tokens[i + 1].word not in NEGATION_CANCELLED_BY


def _normalise(text: str) -> str:
    t = text.lower().replace("’", "'").replace("‘", "'")
    t = ABBREVIATION.sub(lambda m: m.group(1).replace(".", ""), t)
    t = FORMULA.sub(lambda m: f"{m.group(1)} {re.sub(r'[^a-z0-9]+', ' ', m.group(2))} ", t)
    t = re.sub(r"[~≈≃]", " approximately ", t)
    return re.sub(r"\b(?:rather than|instead of)\b", " ratherthan ", t)


def _words(text: str) -> tuple[Token, ...]:
    return tuple(make_token(w) for w in WORD.findall(text) if w not in ARTICLES)


@dataclass(frozen=True)
class Clause:
    tokens: tuple[Token, ...]
    sentence: int  # index of its sentence in the answer


def split_clauses(text: str) -> list[Clause]:
    """The answer's clauses, in order: sentences (ends, blank lines, list items) cut at
    punctuation, dashes and arrows, and before a word of CLAUSE_WORDS ("but", "because", ...).
    A single line break is only wrapping."""
    clauses = []
    for n, sentence in enumerate(SENTENCE_BREAK.split(_normalise(text))):
        for part in CLAUSE_BREAK.split(sentence):
            current: list[Token] = []
            for token in _words(part):
                if token.word in CLAUSE_WORDS and current:
                    clauses.append(Clause(tuple(current), n))
                    current = []
                current.append(token)
            if current:
                clauses.append(Clause(tuple(current), n))
    return clauses


# --------------------------------------------------------------------------- phrases


@dataclass(frozen=True)
class Phrase:
    text: str  # as the config writes it
    keys: tuple[str, ...]
    self_negated: bool  # starts with a negation ("not digits"): matched as written

    @classmethod
    def of(cls, text: str) -> Phrase:
        tokens = _words(_normalise(text))
        return cls(text, tuple(stem(t.word) for t in tokens), bool(tokens) and is_negation(tokens, 0))


def find_phrase(phrase: Phrase, tokens: tuple[Token, ...], max_gap: int | None) -> list[tuple[int, ...]]:
    """Positions of each occurrence of the phrase's words, in order, each within ``max_gap``
    words of the one before (None: anywhere after it in ``tokens``)."""
    found = []
    for start, token in enumerate(tokens):
        if not phrase.keys or phrase.keys[0] not in token.keys:
            continue
        positions = [start]
        for key in phrase.keys[1:]:
            last = positions[-1]
            end = len(tokens) if max_gap is None else min(len(tokens), last + 2 + max_gap)
            nxt = next((j for j in range(last + 1, end) if key in tokens[j].keys), None)
            if nxt is None:
                break
            positions.append(nxt)
        if len(positions) == len(phrase.keys):
            found.append(tuple(positions))
    return found


def negated_at(tokens: tuple[Token, ...], positions: tuple[int, ...]) -> bool:
    """Whether a negation in the clause reaches the phrase at ``positions``: within
    NEGATION_WINDOW words before it and not before an "and" ("no holes and close codes"), or
    between its words."""
    before = []
    for j in range(positions[0] - 1, max(-1, positions[0] - 1 - NEGATION_WINDOW), -1):
        if tokens[j].word in SCOPE_ENDS:
            break
        before.append(j)
    inside = (j for j in range(positions[0], positions[-1]) if j not in positions)
    return any(is_negation(tokens, j) for j in (*before, *inside))


def find_concept(text: str, synonyms: tuple[str, ...]) -> str | None:
    """The first synonym present and not negated, else None."""
    clauses = split_clauses(text)
    for synonym in synonyms:
        phrase = Phrase.of(synonym)
        for clause in clauses:
            for positions in find_phrase(phrase, clause.tokens, SYNONYM_GAP):
                if phrase.self_negated or not negated_at(clause.tokens, positions):
                    return synonym
    return None


@dataclass(frozen=True)
class ConceptPhrases:
    """One concept's phrases, compiled: (phrase, max gap, vague, sign), sign -1 for opposites."""

    concept: Concept
    phrases: tuple[tuple[Phrase, int | None, bool, int], ...]


@dataclass(frozen=True)
class CompiledQuestion:
    concepts: tuple[ConceptPhrases, ...]
    topics: tuple[tuple[Phrase, str], ...]  # longest phrase first


@functools.lru_cache(maxsize=64)
def compile_question(q: Question) -> CompiledQuestion:
    concepts = []
    for c in q.concepts:
        phrases = [(Phrase.of(s), SYNONYM_GAP, False, 1) for s in c.synonyms]
        phrases += [(Phrase.of(s), None, False, 1) for s in c.paraphrases]
        phrases += [(Phrase.of(s), SYNONYM_GAP, True, 1) for s in c.vague]
        phrases += [(Phrase.of(s), SYNONYM_GAP, False, -1) for s in c.opposites]
        concepts.append(ConceptPhrases(c, tuple(p for p in phrases if p[0].keys)))
    topics = [(Phrase.of(p), t.id) for t in q.topics for p in t.phrases]
    topics.sort(key=lambda pt: -len(pt[0].keys))
    return CompiledQuestion(tuple(concepts), tuple(t for t in topics if t[0].keys))


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """A phrase of a concept in the answer, read in its clause."""

    concept: str
    phrase: str
    vague: bool
    holds: bool  # the answer says the concept (False: it says the contrary)
    hedged: bool  # "a few", "might", ...: no denial
    topics: frozenset[str]  # what it is said of; empty: not known


@dataclass(frozen=True)
class Hit:
    concept: str
    phrase: Phrase
    vague: bool
    sign: int
    positions: tuple[int, ...]


@dataclass(frozen=True)
class Mention:
    position: int
    length: int
    topic: str
    compared: bool  # after "than" / "as": the other side of a comparison


def topic_mentions(cq: CompiledQuestion, tokens: tuple[Token, ...]) -> list[Mention]:
    """The topics a clause names, longest phrase first where two overlap."""
    mentions, taken = [], set()
    for phrase, topic in cq.topics:
        for positions in find_phrase(phrase, tokens, 0):
            span = range(positions[0], positions[-1] + 1)
            if taken.isdisjoint(span):
                taken.update(span)
                mentions.append(Mention(positions[0], len(span), topic, is_compared(tokens, positions[0])))
    return sorted(mentions, key=lambda m: m.position)


def is_compared(tokens: tuple[Token, ...], position: int) -> bool:
    """Whether the word at ``position`` is the other side of a comparison: "than" or "as" within
    3 words before it, but not "as well as", "such as" or "the same as"."""
    for j in range(position - 1, max(-1, position - 4), -1):  # the nearest "than" or "as" decides
        word = tokens[j].word
        if word == "than":
            return True
        if word == "as":
            return j == 0 or tokens[j - 1].word not in NOT_COMPARING
    return False


def clause_hits(cq: CompiledQuestion, tokens: tuple[Token, ...]) -> list[Hit]:
    """Every concept phrase in the clause; where a vague phrase of a concept overlaps another of
    its phrases (the vague "smoother" inside the plain "smooth"), the vague one stands."""
    hits = []
    for cp in cq.concepts:
        found = [
            Hit(cp.concept.id, phrase, vague, sign, positions)
            for phrase, gap, vague, sign in cp.phrases
            for positions in find_phrase(phrase, tokens, gap)
        ]
        vague_spans = [set(range(h.positions[0], h.positions[-1] + 1)) for h in found if h.vague]
        hits += [
            h
            for h in found
            if h.vague
            or h.sign < 0
            or all(s.isdisjoint(range(h.positions[0], h.positions[-1] + 1)) for s in vague_spans)
        ]
    return hits


def _read_hit(hit: Hit, tokens: tuple[Token, ...], mentions: list[Mention], context: frozenset[str]) -> Claim:
    start, end = hit.positions[0], hit.positions[-1]
    negated = not hit.phrase.self_negated and negated_at(tokens, hit.positions)
    subject = frozenset(m.topic for m in mentions if m.position < start and not m.compared)
    subject = subject or frozenset(m.topic for m in mentions if m.position > end and not m.compared) or context
    compared = frozenset(m.topic for m in mentions if m.position > end and m.compared)
    less = any(t.word in LESS for t in tokens[max(0, start - 2) : start])
    if compared and (negated or less):  # "A isn't as smooth as B", "A is less smooth than B": B is smooth
        subject, negated = compared, False
    hedged = any(t.word in HEDGES for t in tokens[:start])
    return Claim(hit.concept, hit.phrase.text, hit.vague, (hit.sign > 0) != negated, hedged, subject)


def _is_ellipsis(tokens: tuple[Token, ...], mentions: list[Mention], hits: list[Hit]) -> bool:
    """A clause that names a topic and says nothing else ("the VAE's are", "AE paths don't")."""
    if not mentions or hits:
        return False
    named = {m.position + k for m in mentions for k in range(m.length)}
    rest = [t.word for i, t in enumerate(tokens) if i not in named]
    return all(w in ELLIPSIS_WORDS or w in NEGATIONS or w.endswith("n't") for w in rest)


def read_claims(q: Question, text: str) -> list[Claim]:
    """What the answer says of each concept, clause by clause (the module docstring's rules)."""
    cq = compile_question(q)
    clauses = split_clauses(text)
    hits = [clause_hits(cq, c.tokens) for c in clauses]
    mentions = [topic_mentions(cq, c.tokens) for c in clauses]
    read: list[list[Claim]] = []
    context: frozenset[str] = frozenset()
    for i, clause in enumerate(clauses):
        read.append([_read_hit(h, clause.tokens, mentions[i], context) for h in hits[i]])
        named = frozenset(m.topic for m in mentions[i] if not m.compared)
        if named and clause.tokens[0].word != "unlike":  # "unlike the AE's" is an aside
            context = named
    claims = [c for r in read for c in r]
    for i, clause in enumerate(clauses):
        if not _is_ellipsis(clause.tokens, mentions[i], hits[i]):
            continue
        topics = frozenset(m.topic for m in mentions[i])
        if clause.tokens[0].word == "unlike":  # the contrary of the clause it sets off
            same = [j for j in (i - 1, i + 1) if 0 <= j < len(clauses) and clauses[j].sentence == clause.sentence]
            for source in same[:1]:
                claims += [Claim(c.concept, c.phrase, c.vague, not c.holds, False, topics) for c in read[source]]
        elif i > 0:  # the clause before, said of this topic with this clause's polarity
            negated = any(is_negation(clause.tokens, j) for j in range(len(clause.tokens)))
            for h in hits[i - 1]:
                claims.append(Claim(h.concept, h.phrase.text, h.vague, (h.sign > 0) != negated, False, topics))
    return claims


# --------------------------------------------------------------------------- concepts


@dataclass(frozen=True)
class Verdict:
    credit: float  # 1, VAGUE_CREDIT or 0
    phrase: str  # what showed it ("" when nothing did)
    contrary: str  # what denied it ("" when nothing did)


def judge(concept: Concept, claims: list[Claim]) -> Verdict:
    """A concept's credit from the claims about it (of its topics, or of no known topic)."""
    mine = [
        c
        for c in claims
        if c.concept == concept.id and (not concept.about or not c.topics or c.topics & set(concept.about))
    ]
    support = [c for c in mine if c.holds]
    full = [c for c in support if not c.vague]
    denial = next((c.phrase for c in mine if not c.holds and not c.hedged), "")
    shown = (full or support)[0].phrase if support else ""
    if denial:  # a contradiction earns nothing for that idea, and so does the contrary alone
        return Verdict(0.0, shown, denial)
    return Verdict(1.0 if full else VAGUE_CREDIT if support else 0.0, shown, "")


@dataclass(frozen=True)
class AnswerReport:
    question: str
    words: int
    limit: int
    found: tuple[str, ...]  # concepts that earn credit, full or half
    missing: tuple[str, ...]
    matches: dict[str, str]  # concept -> the phrase that matched
    credit: dict[str, float]  # concept -> 1, 0.5 or 0
    contrary: dict[str, tuple[str, str]]  # concept -> (the phrase that showed it or "", the one that denied it)
    share: float  # the weighted share of credit, before keyword-list and length rules

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


def assess(q: Question, text: str) -> AnswerReport:
    claims = read_claims(q, text)
    verdicts = {c.id: judge(c, claims) for c in q.concepts}
    found = tuple(c.id for c in q.concepts if verdicts[c.id].credit > 0)
    missing = tuple(c.id for c in q.concepts if verdicts[c.id].credit == 0)
    total = sum(c.weight for c in q.concepts)
    share = sum(c.weight * verdicts[c.id].credit for c in q.concepts) / total if total else 1.0
    return AnswerReport(
        q.id,
        count_words(text),
        q.word_limit,
        found,
        missing,
        {k: verdicts[k].phrase for k in found},
        {k: v.credit for k, v in verdicts.items()},
        {k: (v.phrase, v.contrary) for k, v in verdicts.items() if v.contrary},
        share,
    )


def answer_pieces(text: str) -> list[list[str]]:
    """The answer's pieces as token lists: lines without list markers, cut at , ; : arrows and sentence ends."""
    # a formula such as N(0, I) is one keyword, not words cut at its comma
    text = FORMULA.sub(lambda m: m.group(1) + re.sub(r"[^a-z0-9]", "", m.group(2)), text.lower().replace("’", "'"))
    pieces = (WORD.findall(piece) for piece in PIECE_BREAK.split(LIST_MARKER.sub("", text)))
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


def to_step(points: float, step: float = POINT_STEP) -> float:
    """Points rounded to the nearest step, halves up (0.25 is 0.5, not banker's 0)."""
    return math.floor(points / step + 0.5 + 1e-9) * step


def answer_points(a: Assignment, q: Question) -> float:
    """The points an answer earns: its item's ``answer`` part where the item has one (the
    interpolation answer is two of its item's three points), else the whole item."""
    item = a.item(q.rubric_item)
    return item.part("answer") if any(p.id == "answer" for p in item.parts) else item.points


def check_answer(
    a: Assignment, q: Question, answers: dict[str, str] | None, unread: str = "", where: str = ""
) -> tuple[ItemResult | None, AnswerReport | None]:
    """The answer item's suggested score and the coverage report; the item is None for a
    question that earns no rubric item of its own (no ``rubric_item`` in the config).
    ``answers`` is None when the file could not be read, ``unread`` says why; ``where`` is where
    the answer belongs, as messages name it (default: its section of the answers file)."""
    if answers is None:
        if not q.rubric_item:
            return None, None
        item = a.item(q.rubric_item)
        why = unread or f"{a.submission.answers} is missing"
        return ItemResult(item.id, item.title, 0.0, answer_points(a, q), "fail", [why]), None
    text = answers.get(q.id, "")
    report = assess(q, text)
    if not q.rubric_item:
        return None, report
    title, max_points = a.item(q.rubric_item).title, answer_points(a, q)

    def result(points: float, status: str, evidence: list[str]) -> tuple[ItemResult, AnswerReport]:
        return ItemResult(q.rubric_item, title, points, max_points, status, evidence, report.to_json()), report

    if report.words < a.answers.min_words:
        return result(
            0.0,
            "fail",
            [
                f"no answer {where or f'under `## {q.id}` in {a.submission.answers}'}"
                if not text
                else f"only {report.words} words"
            ],
        )
    on_topic = topic_words(a, text) if q.concepts and not report.found and not report.contrary else set()
    if q.concepts and not report.found and not report.contrary and len(on_topic) < MIN_TOPIC_WORDS:
        return result(
            0.0,
            "fail",
            [
                f"off-topic: {report.words} words, none about the question (no expected concept, fewer than "
                f"{MIN_TOPIC_WORDS} of the assignment's words: {', '.join(sorted(on_topic)) or 'none'})"
            ],
        )
    evidence = [f"{report.words} words (limit {q.word_limit})", *concept_evidence(q, report)]
    share = report.share
    keywords = reads_as_keywords(text)
    if keywords:
        share *= KEYWORD_LIST_MAX_SHARE
    penalty = 0.0
    if report.words > q.word_limit:
        penalty = a.answers.over_limit_penalty
        evidence.append(f"over the word limit by {report.words - q.word_limit} words: -{penalty:.0%} of the item")
    points = to_step(max(0.0, max_points * (share - penalty)))
    if keywords:
        evidence.append(f"{KEYWORD_EVIDENCE} (each idea suggested at most {KEYWORD_LIST_MAX_SHARE:.0%} of its points)")
        return result(points, "needs_review", evidence)
    if report.share >= 1 and not penalty:  # every concept, within the limit: confident (an override still wins)
        return result(points, "pass", evidence)
    evidence.append("suggested score: not every expected concept was found, so an instructor reviews it")
    return result(points, "needs_review", evidence)


def concept_evidence(q: Question, report: AnswerReport) -> list[str]:
    """What the scorer found, in words an instructor checks against the answer."""
    full = [c for c in report.found if report.credit[c] >= 1]
    half = [c for c in report.found if report.credit[c] < 1]
    lines = []
    if full:
        lines.append("covers: " + ", ".join(f"{c} ('{report.matches[c]}')" for c in full))
    if half:
        lines.append("half credit, only a vague phrase: " + ", ".join(f"{c} ('{report.matches[c]}')" for c in half))
    for c, (shown, contrary) in report.contrary.items():
        if shown:
            lines.append(f"contradicts itself on {c}: '{shown}' and '{contrary}' (no credit for it)")
        else:
            lines.append(f"says the contrary of {c}: '{contrary}'")
    absent = [c for c in report.missing if c not in report.contrary]
    if absent:
        lines.append("not found: " + ", ".join(absent))
    return lines


def topic_words(a: Assignment, text: str) -> set[str]:
    """Content words the answer shares with the assignment's prompts and concept phrases
    (compared by stem, so "reconstructions" meets "reconstruction")."""
    phrases = [q.prompt for q in a.questions]
    phrases += [p for q in a.questions for t in q.topics for p in t.phrases]
    phrases += [
        s for q in a.questions for c in q.concepts for s in (*c.synonyms, *c.paraphrases, *c.vague, *c.opposites)
    ]
    vocabulary = {stem(w) for p in phrases for w in WORD.findall(_normalise(p))}
    return {
        w
        for w in WORD.findall(_normalise(text))
        if stem(w) in vocabulary and w not in STOPWORDS and w not in NEGATIONS and len(w) > 2
    }


def answer_place(sub: Submission, q: Question) -> str:
    """Where a question's answer belongs, as a message names it: a notebook's question cell (the
    answer is the cell's own "Answer:" text or the cell after it), else "" (the answers file)."""
    if sub.notebook is None:
        return ""
    cells = sub.notebook.roles.get(f"question.{q.id}") or []
    where = f"cell {cells[0]}" if cells else "its question cell, which was not found"
    return f'to the question in {sub.notebook.file} {where} ("{q.prompt[:60]}")'


def score_answers(a: Assignment, sub: Submission) -> tuple[dict[str, ItemResult], dict[str, dict]]:
    """Each question's item (by rubric item id) and its concept report (by question id)."""
    answers = None if sub.answers_unread else sub.answers
    items, reports = {}, {}
    for q in a.questions:
        item, report = check_answer(a, q, answers, sub.answers_unread, answer_place(sub, q))
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
