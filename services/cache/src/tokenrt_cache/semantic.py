"""Semantic (near-duplicate) matching: buckets, the lexical sketch, the guard. Pure.

Only the last user message may differ between a request and a semantic hit; everything
else (model, system prompt, earlier turns, tools, sampling, images) must be identical,
so it goes into the bucket hash. Within a bucket, a candidate answers when

* the similarity of the two prompts' prose is at least the threshold: a bottom-k
  MinHash estimate of the Jaccard similarity of their shingles (content words, lower
  case, light stemming, plus ordered pairs of neighbouring content words, so
  "celsius to fahrenheit" is not "fahrenheit to celsius"), and
* the guard holds: identical code blocks and inline code, identifiers (calls, snake /
  camel case, dotted names, the word naming a function / class / file...), numbers,
  file paths, programming languages and negations.

A question about `foo()` never gets the answer about `bar()`: the identifiers differ,
so the guard rejects whatever the similarity.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from dataclasses import dataclass

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache.core import canonical

SKETCH_SIZE = 128
GUARD_BYTES = 16

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_CALL = re.compile(r"([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\s*\(")
_SNAKE = re.compile(r"\b[A-Za-z0-9]*_[A-Za-z0-9_]+\b")
_CAMEL = re.compile(r"\b(?:[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
_CAPS = re.compile(r"\b[A-Z][A-Z0-9]{1,}\b")
_NUMBER = re.compile(r"(?<![\w.])(?:0[xX][0-9a-fA-F]+|\d+(?:[.,:]\d+)*)(?![\w])")
_PATH = re.compile(
    r"(?:[\w.~-]*/)+[\w.-]+|\b[\w-]+\.(?:py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|java|kt|kts|c|h|cc|"
    r"cpp|hpp|cs|rb|php|swift|scala|m|mm|sh|bash|zsh|ps1|sql|md|rst|txt|json|yaml|yml|toml|"
    r"ini|cfg|conf|xml|html|htm|css|scss|vue|svelte|lock|gradle|proto|env|dockerfile|tf)\b",
    re.I)
_NAMED = re.compile(
    r"\b(?:function|method|class|struct|interface|enum|variable|var|field|property|module|"
    r"package|crate|table|column|file|hook|component|endpoint|route|test|param|parameter|"
    r"argument|constant|const|type|trait|macro|command|flag|option|key|branch|service|repo)\s+"
    r"([A-Za-z_][\w-]*)|\b([A-Za-z_][\w-]*)\s+(?:function|method|class|struct|interface|enum|"
    r"variable|field|property|module|package|crate|table|column|file|hook|component|endpoint|"
    r"route|test|parameter|argument|constant|type|trait|macro|command|flag|option|key|"
    r"branch|service|repo)\b", re.I)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_OPERATOR_CHARS = frozenset("=!<>&|+-*/%^~:?.")
_SINGLE_OPERATORS = frozenset("=<>+*/%^&|~")
LANGUAGES = frozenset({
    "python", "javascript", "typescript", "java", "kotlin", "golang", "go", "rust", "ruby",
    "php", "swift", "scala", "haskell", "elixir", "erlang", "clojure", "perl", "lua", "dart",
    "julia", "bash", "shell", "powershell", "sql", "html", "css", "c++", "cpp", "c#", "csharp",
    "f#", "objective-c", "zig", "nim", "ocaml", "fortran", "cobol", "matlab", "solidity",
    "groovy", "r", "c", "node", "nodejs", "deno", "react", "vue", "angular", "svelte", "django",
    "flask", "fastapi", "rails", "spring", "numpy", "pandas", "pytorch", "tensorflow",
})
NEGATIONS = frozenset({
    "not", "no", "never", "without", "none", "nor", "cannot", "can't", "cant", "don't", "dont",
    "doesn't", "doesnt", "isn't", "isnt", "aren't", "won't", "wont", "shouldn't", "mustn't",
    "didn't", "wasn't", "except", "exclude", "excluding", "unless",
})
STOPWORDS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "is", "are", "was", "were", "be",
    "been", "being", "am", "do", "does", "did", "doing", "done", "can", "could", "would",
    "should", "will", "shall", "may", "might", "must", "i", "me", "my", "mine", "we", "our",
    "us", "you", "your", "it", "its", "it's", "to", "of", "in", "on", "at", "for", "with",
    "by", "from", "as", "and", "or", "but", "so", "please", "pls", "kindly", "some", "any",
    "just", "also", "here", "there", "hey", "hi", "hello", "thanks", "thank", "let", "let's",
    "lets", "i'm", "im", "i'd", "id", "i've", "ive", "have", "has", "had", "get", "got",
    "into", "about", "via", "using", "use", "way", "quick", "quickly", "briefly", "question",
    "help", "want", "need", "like", "tell", "show", "give", "provide", "able", "possible",
    "one", "something", "thing", "following", "below", "given", "certain",
})
# Contractions of question words, with or without the apostrophe.
_SPELLING = {"what's": "what", "whats": "what", "how's": "how", "hows": "how",
             "where's": "where", "wheres": "where", "who's": "who", "why's": "why"}
_LANG_SPECIAL = re.compile(r"(?i)(?<![\w])(c\+\+|c#|f#|objective-c)(?![\w])")


# ---- the bucket and the text compared ----------------------------------------------

@dataclass(frozen=True)
class Query:
    """What a semantic lookup compares: the bucket it belongs to and its prompt text."""

    bucket: str
    text: str


def query_of(req: cache_pb2.CacheableRequest, backend: str = "") -> Query | None:
    """The bucket and prompt of a request; None when its last message is not user text.

    `backend` names an embedding backend (its model): candidates of two backends live in
    different buckets, so their vectors are never compared. The lexical backend is ''."""
    if not req.messages:
        return None
    last = req.messages[-1]
    texts = [p.text for p in last.content if p.WhichOneof("part") == "text"]
    if last.role != common_pb2.ROLE_USER or not any(t.strip() for t in texts):
        return None
    rest = cache_pb2.CacheableRequest()
    rest.CopyFrom(req)
    for part in rest.messages[-1].content:
        if part.WhichOneof("part") == "text":
            part.text = ""
    salt = b"semantic\x00" + (backend.encode() + b"\x00" if backend else b"")
    bucket = hashlib.blake2b(salt + canonical(rest), digest_size=16).hexdigest()
    return Query(bucket, "\n".join(texts))


# ---- guard ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Guard:
    """What must be identical between a prompt and a semantic hit."""

    code: tuple[str, ...]
    identifiers: tuple[str, ...]
    numbers: tuple[str, ...]
    paths: tuple[str, ...]
    languages: tuple[str, ...]
    negations: tuple[str, ...]
    operators: tuple[str, ...]
    # The content words (stop words dropped, stemmed): a paraphrase may add or drop filler
    # and reorder, never swap a word that carries meaning ("first" for "last").
    words: tuple[str, ...]

    def fingerprint(self) -> bytes:
        doc = json.dumps([self.code, self.identifiers, self.numbers, self.paths,
                          self.languages, self.negations, self.operators, self.words],
                         ensure_ascii=False)
        return hashlib.blake2b(doc.encode("utf-8", "surrogatepass"),
                               digest_size=GUARD_BYTES).digest()


def _code_block(body: str) -> str:
    return "\n".join(line.rstrip() for line in body.strip("\n").split("\n"))


def split_code(text: str) -> tuple[list[str], str]:
    """Fenced code blocks and inline code spans, and the prose with them blanked out."""
    code = [_code_block(m.group(1)) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub(" ", text)
    code += [m.group(1).strip() for m in _INLINE.finditer(prose)]
    prose = _INLINE.sub(" ", prose)
    return code, prose


def guard_of(text: str) -> Guard:
    code, prose = split_code(text)
    paths = {m.group(0).strip(".").lower() for m in _PATH.finditer(prose)}
    ids: set[str] = set()
    letters = [c for c in prose if c.isalpha()]
    shouting = sum(c.isupper() for c in letters) > len(letters) / 2
    # In a prompt written in capitals, capitalised words are not constants.
    patterns = (_CALL, _SNAKE, _CAMEL, _DOTTED) if shouting else (_CALL, _SNAKE, _CAMEL, _DOTTED,
                                                                  _CAPS)
    for pattern in patterns:
        for m in pattern.finditer(prose):
            ids.add(m.group(1) if pattern is _CALL else m.group(0))
    for m in _NAMED.finditer(prose):
        word = (m.group(1) or m.group(2) or "").lower()
        if word and word not in STOPWORDS and word not in NEGATIONS:
            ids.add(word)
    numbers = {m.group(0) for m in _NUMBER.finditer(prose)}
    lower = prose.lower()
    words = set(_WORD.findall(lower))
    langs = {w for w in words if w in LANGUAGES}
    langs |= {m.group(1).lower() for m in _LANG_SPECIAL.finditer(prose)}
    negs = {w for w in words if w in NEGATIONS}
    if re.search(r"n't\b", lower):
        negs.add("n't")
    return Guard(tuple(sorted(set(code))), tuple(sorted(ids)), tuple(sorted(numbers)),
                 tuple(sorted(paths)), tuple(sorted(langs)), tuple(sorted(negs)),
                 operators(prose), tuple(sorted(set(content_words(prose)))))


def operators(prose: str) -> tuple[str, ...]:
    """Stand-alone operator tokens (`==`, `!==`, `->`, `+=`, a lone `<`), which a word-based
    sketch cannot see; sentence punctuation (`?`, `...`, `-`) is not one."""
    found = set()
    for token in prose.split():
        token = token.strip(",;()[]{}\"'")
        if token and all(c in _OPERATOR_CHARS for c in token) and set(token) - set(".?:-!") \
                and (len(token) > 1 or token in _SINGLE_OPERATORS):
            found.add(token)
    return tuple(sorted(found))


# ---- lexical sketch ------------------------------------------------------------------

def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(prose: str) -> list[str]:
    words = (_SPELLING.get(w, w) for w in _WORD.findall(prose.lower()))
    return [_stem(w) for w in words if w not in STOPWORDS]


def sketch(text: str, size: int = SKETCH_SIZE) -> tuple[int, ...]:
    """Bottom-k MinHash of the prose's shingles: the `size` smallest 32-bit hashes."""
    _code, prose = split_code(text)
    words = content_words(prose)
    shingles = {w.encode() for w in words}
    shingles |= {f"{a} {b}".encode() for a, b in zip(words, words[1:], strict=False)}
    hashes = sorted({zlib.crc32(s) for s in shingles})
    return tuple(hashes[:size])


def similarity(a: tuple[int, ...], b: tuple[int, ...], size: int = SKETCH_SIZE) -> float:
    """Estimated Jaccard similarity of two sketches (exact while both sets are small)."""
    if not a and not b:
        return 1.0
    union = sorted(set(a) | set(b))[:size]
    sa, sb = set(a), set(b)
    both = sum(1 for h in union if h in sa and h in sb)
    return both / len(union)


def pack(sk: tuple[int, ...], guard: bytes, vector: bytes = b"") -> bytes:
    """What a bucket stores per entry: the guard fingerprint, then the sketch; with an
    embedding backend, the sketch's length first and the packed vector after it."""
    body = struct.pack(f"<{len(sk)}I", *sk)
    if not vector:
        return guard + body
    return guard + struct.pack("<H", len(sk)) + body + vector


def unpack(value: bytes) -> tuple[bytes, tuple[int, ...]]:
    """The guard and sketch of a lexical candidate."""
    guard, rest = value[:GUARD_BYTES], value[GUARD_BYTES:]
    return guard, struct.unpack(f"<{len(rest) // 4}I", rest)


def unpack_embedded(value: bytes) -> tuple[bytes, tuple[int, ...], bytes]:
    """The guard, sketch and packed vector of an embedding backend's candidate."""
    guard = value[:GUARD_BYTES]
    (n,) = struct.unpack_from("<H", value, GUARD_BYTES)
    start = GUARD_BYTES + 2
    sk = struct.unpack_from(f"<{n}I", value, start)
    return guard, sk, value[start + 4 * n:]


# A candidate's prose must share at least this share of shingles (content words and
# ordered pairs) with the prompt. Embeddings rate "celsius to fahrenheit" and "fahrenheit
# to celsius" alike (cosine 0.997 with MiniLM); the word pairs tell them apart (0.4).
ORDER_FLOOR = 0.6


@dataclass(frozen=True)
class Score:
    """A candidate's similarity, and whether the guard holds for it."""

    similarity: float
    guarded: bool


def lexical_scores(sk: tuple[int, ...], guard: bytes, values: list[bytes]) -> list[Score]:
    out = []
    for value in values:
        c_guard, c_sketch = unpack(value)
        out.append(Score(similarity(sk, c_sketch), c_guard == guard))
    return out


@dataclass(frozen=True)
class Verdict:
    """Candidates that pass, best first; else the best failed similarity and why."""

    keys: tuple[str, ...]
    similarity: float
    reason: cache_pb2.CacheMissReason.ValueType | None


def rank(keys: list[str], scores: list[Score], threshold: float) -> Verdict:
    """The candidates that pass the threshold and the guard, most similar first."""
    passing: list[tuple[float, str]] = []
    rejected = below = 0.0
    for key, score in zip(keys, scores, strict=True):
        sim = score.similarity
        if sim < threshold:
            below = max(below, sim)
        elif not score.guarded:
            rejected = max(rejected, sim)
        else:
            passing.append((sim, key))
    if passing:
        passing.sort(key=lambda p: (-p[0], p[1]))
        return Verdict(tuple(k for _, k in passing), passing[0][0], None)
    if rejected:
        return Verdict((), rejected, cache_pb2.CACHE_MISS_REASON_GUARD_REJECTED)
    if keys:
        return Verdict((), below, cache_pb2.CACHE_MISS_REASON_BELOW_THRESHOLD)
    return Verdict((), 0.0, cache_pb2.CACHE_MISS_REASON_NOT_FOUND)
