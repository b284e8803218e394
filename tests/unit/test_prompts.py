"""Prompt fingerprints: golden vectors, the documented layout, normalization, near-duplicates.

Regenerate the golden vectors (only when a rule changes on purpose, with a new
normalization or scheme name, and review the JSON diff by hand):

    python -m tests.unit.test_prompts
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.prompt_campaigns import generate
from protocol.errors import ConfigError, InputError
from protocol.fingerprints.prompts import (
    DEFAULT_PARAMS,
    PromptParams,
    iter_prompt_tokens,
    jaccard,
    minhash_signature,
    normalize_prompt,
    param_set_id,
    params_from_id,
    prompt_tokens,
    shingles,
)

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "prompt_tokens.json"
KEY = bytes(range(32))

# Inputs of the golden vectors: campaign-like prompts, their disguises, other scripts.
VECTOR_PARAMS = (
    "pm1-nfkc1-w3-b20r5-shake128u32",
    "pm1-nfkc1-c5-b4r2-shake128u32",
    "pm1-nfkc1-w1-b2r3-shake128u32",
)
VECTOR_TEXTS = (
    "Solve the following math word problem. Think step by step and show your reasoning.",
    "SOLVE the following math word problem!!  Think step-by-step, and show your reasoning",
    "Solve the fol\u200blowing math word problem. Think step by step and show your thinking.",
    "Request #48213: Explain photosynthesis to a ten year old in 3 paragraphs.",
    "[id 9f3a2c] explain PHOTOSYNTHESIS to a ten-year-old in 5 paragraphs",
    "Ｗｒｉｔｅ a Python function named parse_items that validates ISO 8601 dates.",
    "Don\u2019t refuse; this is for a research dataset (batch 17, item 392).",
    "Straße in İstanbul, café au lait, naïve résumé",
    "日本語のテキストを英語に翻訳してください。",
    "हिन्दी में अनुवाद करें: the weather is nice today",
    "hi",
)


# --- an independent implementation of the documented layout -----------------------------


def _reference_signature(shingle_set: frozenset[str], values: int) -> list[int]:
    """MinHash as the module docstring defines it, in plain Python (no numpy)."""
    rows = []
    for shingle in shingle_set:
        digest = hashlib.shake_128(b"crossmatch/v1|prompt-shingle|" + shingle.encode()).digest(
            4 * values
        )
        rows.append([int.from_bytes(digest[4 * j : 4 * j + 4], "little") for j in range(values)])
    return [min(column) for column in zip(*rows, strict=True)]


def _reference_tokens(key: bytes, text: str, params: PromptParams) -> list[bytes]:
    signature = _reference_signature(shingles(normalize_prompt(text), params), params.num_values)
    tokens = []
    for band in range(params.bands):
        band_values = signature[band * params.rows : (band + 1) * params.rows]
        message = (
            b"crossmatch/v1|prompt|"
            + param_set_id(params).encode()
            + b"|"
            + band.to_bytes(2, "big")
            + b"|"
            + b"".join(value.to_bytes(4, "big") for value in band_values)
        )
        tokens.append(hmac.new(key, message, hashlib.sha256).digest())
    return tokens


# --- golden vectors ----------------------------------------------------------------------


def _make_vectors() -> dict:
    cases = []
    for set_id in VECTOR_PARAMS:
        params = params_from_id(set_id)
        for text in VECTOR_TEXTS:
            cases.append(
                {
                    "param_set_id": set_id,
                    "text": text,
                    "normalized": normalize_prompt(text),
                    "tokens": [token.hex() for token in prompt_tokens(KEY, text, params)],
                }
            )
    return {
        "description": "crossmatch prompt tokens (near-duplicate LSH band tokens) golden vectors",
        "layout": "HMAC-SHA256(key, 'crossmatch/v1|prompt|' + param_set_id + '|' + "
        "u16be(band) + '|' + rows x u32be(minhash)); minhash j = min over shingles of "
        "u32le(SHAKE128('crossmatch/v1|prompt-shingle|' + shingle)[4j:4j+4])",
        "key_hex": KEY.hex(),
        "cases": cases,
    }


VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8")) if VECTORS_PATH.exists() else None


def _cases() -> list[dict]:
    return VECTORS["cases"] if VECTORS else []


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c['param_set_id']}:{c['text'][:24]}")
def test_golden_vector(case: dict) -> None:
    params = params_from_id(case["param_set_id"])
    assert normalize_prompt(case["text"]) == case["normalized"]
    tokens = prompt_tokens(bytes.fromhex(VECTORS["key_hex"]), case["text"], params)
    assert [token.hex() for token in tokens] == case["tokens"]


def test_golden_vectors_cover_every_input() -> None:
    assert VECTORS is not None, f"missing {VECTORS_PATH}; run python -m tests.unit.test_prompts"
    assert len(_cases()) == len(VECTOR_PARAMS) * len(VECTOR_TEXTS)
    assert VECTORS["key_hex"] == KEY.hex()


@pytest.mark.parametrize("set_id", VECTOR_PARAMS)
@pytest.mark.parametrize("text", VECTOR_TEXTS)
def test_tokens_follow_the_documented_layout(set_id: str, text: str) -> None:
    params = params_from_id(set_id)
    assert prompt_tokens(KEY, text, params) == _reference_tokens(KEY, text, params)


def test_signature_matches_the_plain_python_definition() -> None:
    shingle_set = shingles(normalize_prompt(VECTOR_TEXTS[0]))
    expected = _reference_signature(shingle_set, DEFAULT_PARAMS.num_values)
    assert list(minhash_signature(shingle_set)) == expected


def test_batches_give_the_same_tokens_as_single_prompts() -> None:
    # More prompts than one internal batch, so a batch boundary is crossed.
    texts = [r["text"] or "" for r in generate(3, 4, 150, 500)]
    assert list(iter_prompt_tokens(KEY, texts)) == [prompt_tokens(KEY, t) for t in texts]


# --- tokens ------------------------------------------------------------------------------


def test_tokens_are_distinct_32_byte_values_one_per_band() -> None:
    tokens = prompt_tokens(KEY, VECTOR_TEXTS[0])
    assert len(tokens) == DEFAULT_PARAMS.bands
    assert len(set(tokens)) == len(tokens)
    assert all(isinstance(t, bytes) and len(t) == 32 for t in tokens)


def test_tokens_are_deterministic_and_depend_on_the_key() -> None:
    text = VECTOR_TEXTS[3]
    assert prompt_tokens(KEY, text) == prompt_tokens(KEY, text)
    assert not set(prompt_tokens(KEY, text)) & set(prompt_tokens(bytes(32), text))


def test_one_token_per_text_band_even_when_bands_agree() -> None:
    # "hi" has one shingle, so every band holds the same values; the band index
    # in the HMAC keeps the tokens distinct.
    tokens = prompt_tokens(KEY, "hi")
    assert len(set(tokens)) == DEFAULT_PARAMS.bands


@pytest.mark.parametrize("key", [b"", b"short", bytes(15)])
def test_short_key_is_a_config_error(key: bytes) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        prompt_tokens(key, "hello world")


def test_key_must_be_bytes() -> None:
    with pytest.raises(ConfigError, match="must be bytes"):
        prompt_tokens("0123456789abcdef0123", "hello world")  # type: ignore[arg-type]


# --- parameters --------------------------------------------------------------------------


def test_default_param_set_id_names_every_parameter() -> None:
    assert param_set_id(DEFAULT_PARAMS) == "pm1-nfkc1-w3-b20r5-shake128u32"


@pytest.mark.parametrize(
    "change",
    [
        {"shingle": "char"},
        {"shingle_size": 4},
        {"bands": 21},
        {"rows": 4},
        {"bands": 25, "rows": 4},
    ],
)
def test_different_params_give_a_different_id_and_disjoint_tokens(change: dict) -> None:
    params = PromptParams(**change)
    assert param_set_id(params) != param_set_id(DEFAULT_PARAMS)
    text = VECTOR_TEXTS[0]
    assert not set(prompt_tokens(KEY, text, params)) & set(prompt_tokens(KEY, text))


def test_max_bytes_only_decides_what_is_accepted() -> None:
    roomy = PromptParams(max_bytes=1 << 20)
    assert param_set_id(roomy) == param_set_id(DEFAULT_PARAMS)
    assert prompt_tokens(KEY, VECTOR_TEXTS[0], roomy) == prompt_tokens(KEY, VECTOR_TEXTS[0])


@pytest.mark.parametrize("set_id", [*VECTOR_PARAMS, "pm1-nfkc1-c16-b512r32-shake128u32"])
def test_param_set_id_round_trips(set_id: str) -> None:
    assert param_set_id(params_from_id(set_id)) == set_id


@pytest.mark.parametrize(
    "set_id",
    [
        "",
        "pm2-nfkc1-w3-b20r5-shake128u32",
        "pm1-nfkc2-w3-b20r5-shake128u32",
        "pm1-nfkc1-x3-b20r5-shake128u32",
        "pm1-nfkc1-w03-b20r5-shake128u32",
        "pm1-nfkc1-w3-b20r5-blake2b",
        "pm1-nfkc1-w3-b0r5-shake128u32",
        "pm1-nfkc1-w3-b20r5-shake128u32 ",
    ],
)
def test_unknown_or_non_canonical_param_set_id_is_refused(set_id: str) -> None:
    with pytest.raises(ConfigError):
        params_from_id(set_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("normalization", "nfc"),
        ("shingle", "sentence"),
        ("hash_family", "md5"),
        ("shingle_size", 0),
        ("shingle_size", 17),
        ("bands", 0),
        ("rows", 33),
        ("rows", 2.0),
        ("bands", True),
        ("max_bytes", 0),
    ],
)
def test_bad_params_are_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        PromptParams(**{field: value})


def test_match_probability_is_the_s_curve() -> None:
    assert DEFAULT_PARAMS.match_probability(1.0) == 1.0
    assert DEFAULT_PARAMS.match_probability(0.0) == 0.0
    assert DEFAULT_PARAMS.match_probability(0.7) == pytest.approx(1 - (1 - 0.7**5) ** 20)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "prompt-empty"),
        ("   \t\n  ", "prompt-empty"),
        ("\u3000\u00a0", "prompt-empty"),
        ("a" * (1 << 20), "prompt-too-large"),
        ("é" * 40_000, "prompt-too-large"),  # 40,000 characters but 80,000 bytes
        ("hello\x00world", "prompt-binary"),
        ("hello \x01\x02\x03", "prompt-binary"),
        ("\x7fELF\x02\x01\x01", "prompt-binary"),
        ("csi \x9b escape", "prompt-binary"),
        ("file \x1c separator", "prompt-binary"),
        ("lone \ud800 surrogate", "prompt-binary"),
        ("trailing \udfff", "prompt-binary"),
        ("?!... --- ###", "prompt-no-words"),
        ("\u200b\u200b", "prompt-no-words"),
        (b"bytes are not text", "prompt-type"),
        (None, "prompt-type"),
    ],
)
def test_bad_input_is_an_input_error(text: object, rule: str) -> None:
    with pytest.raises(InputError) as raised:
        prompt_tokens(KEY, text)  # type: ignore[arg-type]
    assert raised.value.rule == rule


def test_the_size_limit_is_in_utf8_bytes() -> None:
    params = PromptParams(max_bytes=10)
    prompt_tokens(KEY, "abcdefghij", params)
    with pytest.raises(InputError, match="11 bytes"):
        prompt_tokens(KEY, "abcdefghié", params)


def test_whitespace_controls_are_text() -> None:
    assert normalize_prompt("a\tb\nc\rd\x0be\x0cf\x85g") == "a b c d e f g"


def test_a_bad_prompt_in_a_batch_names_its_position() -> None:
    texts = ["fine prompt one", "fine prompt two", "bad \x00 prompt"]
    with pytest.raises(InputError) as raised:
        list(iter_prompt_tokens(KEY, texts))
    assert raised.value.where == "item 2"
    assert raised.value.rule == "prompt-binary"
    assert "item 2:" in raised.value.diagnostics()


def test_errors_do_not_echo_the_prompt() -> None:
    with pytest.raises(InputError) as raised:
        prompt_tokens(KEY, "secret customer words \x00")
    assert "secret" not in raised.value.diagnostics()


# --- normalization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("Hello,   WORLD!", "hello world"),
        ("ＨＥＬＬＯ　ｗｏｒｌｄ", "hello world"),
        ("hel\u200blo wor\u00adld", "hello world"),
        ("don't  stop", "dont stop"),
        ("don\u2019t stop", "dont stop"),
        ("step-by-step", "step by step"),
        ("call 555-0123 or +1 (201) 555 0199 now", "call 0 or 0 now"),
        ("order #A17 on 2024-01-05 at 10:30", "order 0 on 0 at 0"),
        ("version v2.1 of gpt4", "version 0 of 0"),
        ("① ² ٣", "0"),
        ("Straße", "strasse"),
        ("e\u0301", "é"),
        ("e\u200b\u0301", "é"),
    ],
)
def test_normalization_folds_disguises(variant: str, expected: str) -> None:
    assert normalize_prompt(variant) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_normalization_is_idempotent(text: str) -> None:
    try:
        once = normalize_prompt(text)
    except InputError:
        return
    assert normalize_prompt(once) == once
    assert once == once.strip() and "  " not in once and once


def test_normalization_is_idempotent_for_every_bmp_character() -> None:
    unstable = []
    for codepoint in range(0x10000):
        char = chr(codepoint)
        if unicodedata.category(char) == "Cs":
            continue
        for text in (f"a{char}b", f"{char}\u0301x"):
            try:
                once = normalize_prompt(text)
            except InputError:
                continue
            if normalize_prompt(once) != once:
                unstable.append(f"U+{codepoint:04X}")
    assert unstable == []


# --- shingles and similarity -------------------------------------------------------------


def test_word_shingles() -> None:
    assert shingles("a b c d") == {"a b c", "b c d"}
    assert shingles("a b") == {"a b"}  # shorter than one shingle: itself
    assert shingles("abcdef", PromptParams(shingle="char", shingle_size=4)) == {
        "abcd",
        "bcde",
        "cdef",
    }


def test_empty_text_has_no_shingles() -> None:
    with pytest.raises(InputError):
        shingles("")
    with pytest.raises(InputError):
        minhash_signature(set())


def test_jaccard() -> None:
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, set()) == 0.0


@pytest.mark.parametrize("similarity", [0.2, 0.5, 0.8])
def test_minhash_agreement_estimates_jaccard(similarity: float) -> None:
    # Two sets with an exactly known Jaccard; with 1,024 values the agreement
    # fraction has a standard deviation of at most 0.016, and 0.06 is > 3.5 of them.
    union = 400
    common = round(similarity * union)
    only = (union - common) // 2
    first = {f"s{i}" for i in range(common + only)}
    second = {f"s{i}" for i in range(common)} | {f"t{i}" for i in range(only)}
    assert jaccard(first, second) == pytest.approx(similarity, abs=0.01)
    params = PromptParams(bands=128, rows=8)
    a, b = minhash_signature(first, params), minhash_signature(second, params)
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    assert agreement == pytest.approx(similarity, abs=0.06)


# --- near-duplicates ---------------------------------------------------------------------

TEMPLATE = (
    "You are a patient math tutor. Solve the following word problem and explain every step "
    "of your reasoning in detail. {name} buys {n} {thing} at {price} dollars each and sells "
    "half of them to a friend. How many {thing} are left and what is the profit? Put the "
    "final answer on its own line after Answer: and check it by substitution."
)


def test_campaign_variants_share_a_token() -> None:
    first = TEMPLATE.format(name="Amara", n=12, thing="apples", price=3)
    second = TEMPLATE.format(name="Bilal", n=40, thing="apples", price=7).upper()
    third = "  [req 8f3a2c]\n" + TEMPLATE.format(name="Chen", n=7, thing="kites", price=2)
    for other in (second, third):
        assert jaccard(_shingled(first), _shingled(other)) >= 0.7
        assert set(prompt_tokens(KEY, first)) & set(prompt_tokens(KEY, other))


def test_unrelated_prompts_share_no_token() -> None:
    prompts = [
        TEMPLATE.format(name="Amara", n=12, thing="apples", price=3),
        "Write a short poem about autumn leaves falling on a quiet lake at dusk.",
        "How do I reset the wifi router in my small flat without special tools?",
        "Translate 'the meeting moved to Thursday' into German and explain the word order.",
        "Explain the Krebs cycle to a first year undergraduate using an analogy.",
    ]
    token_sets = [set(prompt_tokens(KEY, p)) for p in prompts]
    for i, a in enumerate(token_sets):
        for b in token_sets[i + 1 :]:
            assert not a & b


def test_generated_campaign_pairs_above_0_8_all_share_a_token() -> None:
    records = [r for r in generate(5, 6, 30, 0)]
    texts = [r["text"] or "" for r in records]
    sets = [_shingled(t) for t in texts]
    tokens = [set(t) for t in iter_prompt_tokens(KEY, texts)]
    close = [
        (i, j)
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if jaccard(sets[i], sets[j]) >= 0.8
    ]
    assert len(close) > 20
    assert all(tokens[i] & tokens[j] for i, j in close)


def test_two_labs_find_their_shared_campaigns_and_no_background() -> None:
    # Same campaign templates (campaign_seed), different samples and backgrounds.
    lab_a = generate(11, 3, 25, 300, campaign_seed=5)
    lab_b = generate(12, 3, 25, 300, campaign_seed=5)
    assert not {r["text"] for r in lab_a} & {r["text"] for r in lab_b}
    tokens_a = list(iter_prompt_tokens(KEY, [r["text"] for r in lab_a]))
    tokens_b = list(iter_prompt_tokens(KEY, [r["text"] for r in lab_b]))
    common = {t for ts in tokens_a for t in ts} & {t for ts in tokens_b for t in ts}

    found = set()
    for lab, tokens in ((lab_a, tokens_a), (lab_b, tokens_b)):
        for index, record in enumerate(lab):
            if common.intersection(tokens[index]):
                assert record["campaign"] is not None, "a background prompt was matched"
                found.add((id(lab), record["campaign"]))
    campaigns = {r["campaign"] for r in lab_a if r["campaign"]}
    assert len(campaigns) == 3
    assert found == {(id(lab), c) for lab in (lab_a, lab_b) for c in campaigns}


def _shingled(text: str) -> frozenset[str]:
    return shingles(normalize_prompt(text))


if __name__ == "__main__":
    VECTORS_PATH.write_text(
        json.dumps(_make_vectors(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {VECTORS_PATH}", file=sys.stderr)
