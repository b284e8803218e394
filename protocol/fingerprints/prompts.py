"""Near-duplicate prompt fingerprints: normalization, shingles, MinHash, LSH band tokens.

A distillation campaign sends many lightly varied copies of a few templates.
Exact hashes of the text miss the variants, so a prompt becomes ``bands`` exact
tokens instead, one per LSH band of its MinHash signature:

1. ``normalize_prompt``: NFKC, casefold, format characters (zero-width space,
   soft hyphen, ...) and apostrophes removed, every other character that is not
   a letter, mark or digit becomes a space, each Han or kana character is a word
   of its own, whitespace collapsed; a word holding a digit becomes ``0`` and a
   run of such words one ``0`` (ids, counts, dates).
2. ``shingles``: the set of word n-grams (or character n-grams) of that text.
3. ``minhash_signature``: ``bands * rows`` values; value ``j`` is the minimum over
   the shingles ``s`` of ``u32le(SHAKE128(b"crossmatch/v1|prompt-shingle|" + s)[4j:4j+4])``.
   SHAKE128 (FIPS 202, in ``hashlib``) gives every shingle ``bands * rows``
   independent pseudo-random values: the same on every machine and Python version,
   with no seed to keep and no ``hash()`` randomization.
4. ``prompt_tokens``: band ``i`` (``rows`` consecutive values, each 4 bytes
   big-endian) becomes ``HMAC-SHA256(key, b"crossmatch/v1|prompt|" + param_set_id
   + b"|" + u16be(i) + b"|" + band_bytes)``.

Two prompts whose shingle sets have Jaccard similarity ``J`` agree on one
MinHash value with probability ``J``, on a whole band with ``J**rows``, and share
at least one token with ``1 - (1 - J**rows) ** bands``: the S-curve that
``docs/prompt-matching.md`` uses to choose ``bands`` and ``rows``.

``param_set_id`` names every parameter that changes a token, and is inside every
token, so nodes with different settings share no token by construction and
compare the id in the round handshake to refuse the round instead.

This module is pure: text and key in, tokens out, ``InputError`` on bad text,
``ConfigError`` on bad parameters or key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from protocol.errors import ConfigError, InputError
from protocol.rules import Rule

TOKEN_SCHEME = "pm1"
NORMALIZATION_V1 = "nfkc1"
HASH_FAMILY_SHAKE128 = "shake128u32"
SHINGLE_KINDS = {"word": "w", "char": "c"}

TOKEN_DOMAIN = b"crossmatch/v1|prompt|"
SHINGLE_DOMAIN = b"crossmatch/v1|prompt-shingle|"
TOKEN_SIZE = 32
MIN_KEY_SIZE = 16
DEFAULT_MAX_BYTES = 64 * 1024

_MAX_SHINGLE_SIZE = 16
_MAX_BANDS = 512
_MAX_ROWS = 32
_MAX_MAX_BYTES = 16 * 1024 * 1024
# Prompts fingerprinted per numpy call: large enough to amortize the call,
# small enough that the (shingles x values) matrix stays a few MB.
_BATCH_SIZE = 512


# --- parameter checks --------------------------------------------------------------------


def _check_choice(name: str, value: object, known: set[str]) -> None:
    if value not in known:
        choices = ", ".join(sorted(known))
        raise ConfigError(
            f"unknown prompt {name} {value!r} (known: {choices})", rule=Rule.PROMPT_PARAMS
        )


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(
            f"prompt {name} must be an integer from {low} to {high}, not {value!r}",
            rule=Rule.PROMPT_PARAMS,
        )


@dataclass(frozen=True)
class PromptParams:
    """Every setting of prompt fingerprinting.

    All fields but ``max_bytes`` change token values and appear in
    ``param_set_id``. ``max_bytes`` only decides which prompts are accepted (UTF-8
    size), so two nodes with different limits still produce the same tokens for
    every prompt both accept.
    """

    normalization: str = NORMALIZATION_V1
    shingle: str = "word"
    shingle_size: int = 3
    bands: int = 20
    rows: int = 5
    hash_family: str = HASH_FAMILY_SHAKE128
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        _check_choice("normalization", self.normalization, {NORMALIZATION_V1})
        _check_choice("shingle", self.shingle, set(SHINGLE_KINDS))
        _check_choice("hash_family", self.hash_family, {HASH_FAMILY_SHAKE128})
        _check_range("shingle_size", self.shingle_size, 1, _MAX_SHINGLE_SIZE)
        _check_range("bands", self.bands, 1, _MAX_BANDS)
        _check_range("rows", self.rows, 1, _MAX_ROWS)
        _check_range("max_bytes", self.max_bytes, 1, _MAX_MAX_BYTES)

    @property
    def num_values(self) -> int:
        """Length of the MinHash signature: one value per (band, row)."""
        return self.bands * self.rows

    def match_probability(self, jaccard_similarity: float) -> float:
        """Chance that two prompts with this Jaccard similarity share at least one token."""
        return 1.0 - (1.0 - jaccard_similarity**self.rows) ** self.bands


DEFAULT_PARAMS = PromptParams()

_PARAM_SET_ID = re.compile(
    r"pm1-(?P<norm>[a-z0-9]+)-(?P<shingle>[wc])(?P<size>[0-9]+)"
    r"-b(?P<bands>[0-9]+)r(?P<rows>[0-9]+)-(?P<family>[a-z0-9]+)"
)


def param_set_id(params: PromptParams) -> str:
    """The name of every token-changing parameter, e.g. ``pm1-nfkc1-w3-b20r5-shake128u32``."""
    shingle = SHINGLE_KINDS[params.shingle]
    return (
        f"{TOKEN_SCHEME}-{params.normalization}-{shingle}{params.shingle_size}"
        f"-b{params.bands}r{params.rows}-{params.hash_family}"
    )


def params_from_id(set_id: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> PromptParams:
    """The parameters a ``param_set_id`` names; ``ConfigError`` if it names none we know."""
    found = _PARAM_SET_ID.fullmatch(set_id) if isinstance(set_id, str) else None
    if found is None:
        raise ConfigError(f"not a prompt parameter set id: {set_id!r}", rule=Rule.PROMPT_PARAMS)
    shingle = {letter: kind for kind, letter in SHINGLE_KINDS.items()}[found["shingle"]]
    params = PromptParams(
        normalization=found["norm"],
        shingle=shingle,
        shingle_size=int(found["size"]),
        bands=int(found["bands"]),
        rows=int(found["rows"]),
        hash_family=found["family"],
        max_bytes=max_bytes,
    )
    if param_set_id(params) != set_id:  # e.g. "w03": one set of parameters, one spelling
        raise ConfigError(
            f"non-canonical prompt parameter set id: {set_id!r}", rule=Rule.PROMPT_PARAMS
        )
    return params


# --- normalization -------------------------------------------------------------------------

# C0/C1 controls other than the whitespace ones (\t \n \v \f \r, NEL), and lone
# surrogates (they cannot be encoded, and only come from broken decoding).
_FORBIDDEN = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")
_DELETED = {"'", "\u2019"}  # "don't" and "dont" are the same word


# Han ideographs and kana: Chinese and Japanese are written without spaces, so a
# whole sentence would be one "word" and word shingles would see no overlap at
# all; each character counts as a word instead (word 3-shingles become character
# trigrams there).
_UNSPACED = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x323AF),  # CJK Unified Ideographs Extensions B-H, Compatibility Supplement
)


def _is_unspaced_script(codepoint: int) -> bool:
    return any(low <= codepoint <= high for low, high in _UNSPACED)


class _FoldTable(dict[int, "int | str | None"]):
    """``str.translate`` table filled on first sight of each code point, by category.

    Letters and marks stay (Han and kana with a space either side), numbers
    become ``0``, format characters (zero-width space, soft hyphen, bidi marks:
    invisible, and a way to dodge exact matching)
    and apostrophes go, everything else (punctuation, symbols, spaces, other
    controls, private use, unassigned) becomes a space.
    """

    def __missing__(self, codepoint: int) -> int | str | None:
        char = chr(codepoint)
        category = unicodedata.category(char)
        value: int | str | None
        if char in _DELETED or category == "Cf":
            value = None
        elif category in ("Nd", "No"):
            value = "0"
        elif category[0] in "LM" and _is_unspaced_script(codepoint):
            value = f" {char} "  # one word per character, see _UNSPACED
        elif category[0] in "LM" or category == "Nl":
            value = codepoint
        else:
            value = " "
        self[codepoint] = value
        return value


_FOLD = _FoldTable()


def normalize_prompt(text: str, *, max_bytes: int | None = None) -> str:
    """Canonical text of a prompt (normalization ``nfkc1``); ``InputError`` on bad text.

    The result holds only lowercase letters, marks and ``0``, in words separated
    by single spaces, and is never empty; normalizing it again changes nothing.
    With ``max_bytes``, a prompt longer than that in UTF-8 is refused too.
    """
    _check_text(text, max_bytes)
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_FOLD)
    # Removing characters can leave a base letter next to a combining mark that it
    # was kept apart from; compose those again so the result is stable.
    folded = unicodedata.normalize("NFKC", folded)
    words: list[str] = []
    for word in folded.split():
        if "0" in word:  # ids, counts, dates, versions: the shape matters, not the value
            if words and words[-1] == "0":
                continue
            word = "0"
        words.append(word)
    if not words:
        raise InputError("prompt has no letters or digits", rule=Rule.PROMPT_NO_WORDS)
    return " ".join(words)


def _check_text(text: object, max_bytes: int | None) -> None:
    if not isinstance(text, str):
        raise InputError(
            f"prompt must be text (str), not {type(text).__name__}; decode it as UTF-8 first",
            rule=Rule.PROMPT_TYPE,
        )
    # Cheap bound first: a str of more than max_bytes characters is at least that
    # many bytes, so a huge string is refused before it is scanned or encoded.
    if max_bytes is not None and len(text) > max_bytes:
        raise InputError(
            f"prompt is {len(text)} characters; the limit is {max_bytes} bytes of UTF-8",
            rule=Rule.PROMPT_TOO_LARGE,
        )
    if not text.strip():
        raise InputError("prompt is empty or only whitespace", rule=Rule.PROMPT_EMPTY)
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        codepoint = ord(bad.group())
        what = "lone surrogate" if 0xD800 <= codepoint <= 0xDFFF else "control character"
        raise InputError(
            f"prompt contains a {what} U+{codepoint:04X} at character {bad.start()}: "
            "binary data or broken decoding, not text",
            rule=Rule.PROMPT_BINARY,
        )
    if max_bytes is not None and (size := len(text.encode("utf-8"))) > max_bytes:
        raise InputError(
            f"prompt is {size} bytes of UTF-8; the limit is {max_bytes}",
            rule=Rule.PROMPT_TOO_LARGE,
        )


# --- shingles and MinHash ----------------------------------------------------------------


def shingles(normalized: str, params: PromptParams = DEFAULT_PARAMS) -> frozenset[str]:
    """Word n-grams (joined by one space) or character n-grams of a normalized prompt.

    A text shorter than one shingle is one shingle, so every prompt has at least one.
    """
    if not normalized:
        raise InputError("cannot shingle an empty text", rule=Rule.PROMPT_NO_WORDS)
    size = params.shingle_size
    if params.shingle == "word":
        words = normalized.split(" ")
        if len(words) <= size:
            return frozenset((normalized,))
        return frozenset(map(" ".join, zip(*(words[i:] for i in range(size)), strict=False)))
    if len(normalized) <= size:
        return frozenset((normalized,))
    return frozenset(normalized[i : i + size] for i in range(len(normalized) - size + 1))


def minhash_signature(
    shingle_set: Iterable[str], params: PromptParams = DEFAULT_PARAMS
) -> tuple[int, ...]:
    """The ``bands * rows`` MinHash values (unsigned 32-bit) of a non-empty shingle set."""
    return tuple(int(value) for value in _signature_matrix([frozenset(shingle_set)], params)[0])


def _signature_matrix(shingle_sets: Sequence[frozenset[str]], params: PromptParams) -> np.ndarray:
    """One row of MinHash values per set: shape (len(shingle_sets), bands * rows), uint32."""
    width = 4 * params.num_values
    base = hashlib.shake_128(SHINGLE_DOMAIN)
    digests: list[bytes] = []
    starts: list[int] = []
    for shingle_set in shingle_sets:
        if not shingle_set:
            raise InputError("cannot fingerprint an empty shingle set", rule=Rule.PROMPT_NO_WORDS)
        starts.append(len(digests))
        for shingle in shingle_set:
            one = base.copy()
            one.update(shingle.encode("utf-8"))
            digests.append(one.digest(width))
    values = np.frombuffer(b"".join(digests), dtype="<u4").reshape(len(digests), -1)
    # The minimum over each set's rows; every set is non-empty, so starts increase strictly.
    return np.minimum.reduceat(values, starts, axis=0)


# --- tokens ------------------------------------------------------------------------------


def prompt_tokens(key: bytes, text: str, params: PromptParams = DEFAULT_PARAMS) -> list[bytes]:
    """The ``params.bands`` distinct 32-byte tokens of one prompt, in band order."""
    return next(iter_prompt_tokens(key, [text], params))


def iter_prompt_tokens(
    key: bytes, texts: Iterable[str], params: PromptParams = DEFAULT_PARAMS
) -> Iterator[list[bytes]]:
    """Tokens of many prompts, one list per prompt in input order, computed in batches.

    Lazy, so 100,000 prompts never sit in memory as tokens at once. A bad prompt
    raises ``InputError`` whose ``where`` is ``"item N"`` (0-based position in
    ``texts``); the tokens of the batch holding it are not yielded.
    """
    banded = _banded_hmacs(key, params)
    band_size = 4 * params.rows
    items = iter(texts)
    position = 0
    while batch := list(islice(items, _BATCH_SIZE)):
        sets = [_shingle_prompt(text, params, position + i) for i, text in enumerate(batch)]
        position += len(batch)
        signatures = _signature_matrix(sets, params).astype(">u4")
        for signature in signatures:
            raw = signature.tobytes()
            tokens = []
            for band, prefixed in enumerate(banded):
                one = prefixed.copy()
                one.update(raw[band * band_size : (band + 1) * band_size])
                tokens.append(one.digest())
            yield tokens


def _shingle_prompt(text: str, params: PromptParams, position: int) -> frozenset[str]:
    try:
        return shingles(normalize_prompt(text, max_bytes=params.max_bytes), params)
    except InputError as error:
        raise InputError(error.message, where=f"item {position}", rule=error.rule) from error


def _banded_hmacs(key: bytes, params: PromptParams) -> list[hmac.HMAC]:
    """One HMAC per band that has absorbed the key and the token prefix, ready to copy."""
    if not isinstance(key, bytes | bytearray):
        raise ConfigError(f"consortium key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_SIZE:
        raise ConfigError(
            f"consortium key is {len(key)} bytes; at least {MIN_KEY_SIZE} are required"
        )
    prefix = TOKEN_DOMAIN + param_set_id(params).encode("ascii") + b"|"
    return [
        hmac.new(bytes(key), prefix + band.to_bytes(2, "big") + b"|", "sha256")
        for band in range(params.bands)
    ]


def jaccard(a: Iterable[object], b: Iterable[object]) -> float:
    """|a & b| / |a | b|; two empty sets are identical, so 1.0."""
    first, second = set(a), set(b)
    union = len(first | second)
    return 1.0 if union == 0 else len(first & second) / union
