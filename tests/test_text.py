"""Raw text -> tokens with exact offsets, and sentences."""
from hypothesis import given
from hypothesis import strategies as st

from tagger.text import split_sentences, tokenize


def words(text, tokenizer="words"):
    return [t.text for t in tokenize(text, tokenizer)]


def test_news_sentences_are_split_like_conll_2003():
    assert words("EU rejects German call to boycott British lamb.") == [
        "EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert words("Angela Merkel visited the U.S. on Monday.") == [
        "Angela", "Merkel", "visited", "the", "U.S.", "on", "Monday", "."]
    assert words("Germany's rep didn't pay $1,000.50.") == [
        "Germany", "'s", "rep", "did", "n't", "pay", "$", "1,000.50", "."]


def test_cjk_characters_and_emoji_are_tokens_of_their_own():
    assert words("王小明在北京") == list("王小明在北京")
    assert words("I 😀 🇩🇪 👨\u200d👩\u200d👧!") == ["I", "😀", "🇩🇪", "👨\u200d👩\u200d👧", "!"]


def test_combining_marks_stay_with_their_letter_and_controls_are_dropped():
    assert words("cafe\u0301 \x07bell") == ["cafe\u0301", "bell"]
    assert words("e\u0301\u0301x", "chars") == ["e\u0301\u0301", "x"]


def test_sentences_end_after_enders_but_not_after_abbreviations():
    text = 'Mr. Brown left. "Why?" she asked.\n\nNew paragraph 。第二句'
    assert [[t.text for t in s] for s in split_sentences(text)] == [
        ["Mr.", "Brown", "left", "."], ['"', "Why", "?", '"', "she", "asked", "."], ["New", "paragraph", "。"],
        ["第", "二", "句"]]


@given(st.text())
def test_offsets_are_exact_ordered_and_tokens_hold_no_whitespace(text):
    for tokenizer in ("words", "chars"):
        previous_end = 0
        for tok in tokenize(text, tokenizer):
            assert text[tok.start : tok.end] == tok.text and tok.text
            assert tok.start >= previous_end
            assert not any(c.isspace() for c in tok.text)
            previous_end = tok.end
