"""Encoding sentences as ids, and batching by exact length."""
import torch

from tagger.encode import Encoder, collate, length_batches
from tagger.vocab import build_vocab, casing, CASINGS


def small_vocab():
    return build_vocab([["UN", "accepts", "Danish", "offer"], ["Ilse", "Yilmaz"]],
                       [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]], pretrained=["un", "danish", "cheese"])


def test_words_are_found_exactly_then_lower_cased_and_unknown_words_map_to_unk():
    vocab = small_vocab()
    enc = Encoder(vocab)(["UN", "un", "Cheese", "zebra"])
    eu, eu_lower, lamb, zebra = [word for word, _, _ in enc.tokens]
    assert eu == eu_lower != 1          # "UN" is stored under its pretrained key "un"
    assert lamb >= len(vocab.words)      # pretrained-only word: a frozen row after the trainable ones
    assert zebra == 1                    # <unk>


def test_each_token_is_spelt_in_character_ids_and_casing_is_kept():
    vocab = small_vocab()
    enc = Encoder(vocab)(["UN", "accepts", "", "Ω"])
    spellings = [spelling for _, _, spelling in enc.tokens]
    assert spellings[0] == (vocab.chars.ids["U"], vocab.chars.ids["N"])
    assert [len(c) for c in spellings] == [2, 7, 1, 1]
    assert spellings[2] == spellings[3] == (1,)  # an empty token and an unseen character: <unk>
    assert [CASINGS[shape] for _, shape, _ in enc.tokens[:2]] == ["upper", "lower"]
    assert CASINGS[casing("1996")] == "numeric" and CASINGS[casing("Yilmaz")] == "title"


def test_batches_hold_sentences_of_one_length_and_cover_every_sentence_once():
    lengths = [3, 5, 3, 1, 5, 5, 3, 2]
    shuffle = torch.Generator().manual_seed(0)
    batches = length_batches(lengths, batch_size=2, permutation=lambda n: torch.randperm(n, generator=shuffle).tolist())
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert batches != length_batches(lengths, batch_size=2)  # shuffled: not in the unshuffled order


def test_collate_pads_and_masks_sentences_of_different_lengths():
    encoder = Encoder(small_vocab())
    batch = collate([encoder(["UN", "accepts", "offer"]), encoder(["Ilse"])])
    assert batch.words.shape == batch.types.shape == batch.casing.shape == (2, 3)
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.words[1].tolist() == [encoder.vocab.word_id("Ilse"), 0, 0]  # padding is word 0


def test_a_batch_spells_each_distinct_word_once():
    encoder = Encoder(small_vocab())
    batch = collate([encoder(["UN", "offer", "UN"]), encoder(["offer", "UN", "Ilse"])])
    assert batch.spelling_lengths.tolist() == [2, 5, 4]  # UN, offer, Ilse
    assert batch.types.tolist() == [[0, 1, 0], [1, 0, 2]]
    assert batch.type_words[batch.types].tolist() == batch.words.tolist()
    assert batch.type_casing[batch.types].tolist() == batch.casing.tolist()
    assert len(batch.spellings) == 11
    ids = encoder.vocab.chars.ids
    assert batch.spellings[7:].tolist() == [ids[c] for c in "Ilse"]


def test_tagging_batches_are_full_unless_the_next_sentence_would_pad_one_past_half_again_its_tokens():
    from tagger.encode import MIN_SENTENCES, sorted_batches

    lengths = [10] * 300 + [12] * 40 + [124]  # a long tail: one sentence far longer than the rest
    batches = sorted_batches(lengths, 256)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each sentence once
    assert [len(b) for b in batches] == [256, 84, 1]  # 84 of 10-12 tokens, then the 124 alone
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.5 * sum(lengths)  # one batch of the last 85 would have padded 85 x 124
    short = [5] * (MIN_SENTENCES - 1) + [100]  # too few sentences to close early: one batch
    assert [len(b) for b in sorted_batches(short, 256)] == [MIN_SENTENCES]
