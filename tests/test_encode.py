"""Encoding sentences as ids, and batching by exact length."""
import torch

from tagger.encode import Encoder, collate, length_batches
from tagger.vocab import build_vocab, casing, CASINGS


def small_vocab():
    return build_vocab([["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
                       [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]], pretrained=["eu", "german", "lamb"])


def test_words_are_found_exactly_then_lower_cased_and_unknown_words_map_to_unk():
    vocab = small_vocab()
    enc = Encoder(vocab)(["EU", "eu", "Lamb", "zebra"])
    eu, eu_lower, lamb, zebra = enc.words.tolist()
    assert eu == eu_lower != 1          # "EU" is stored under its pretrained key "eu"
    assert lamb >= len(vocab.words)      # pretrained-only word: a frozen row after the trainable ones
    assert zebra == 1                    # <unk>


def test_characters_are_padded_per_sentence_and_casing_is_kept():
    enc = Encoder(small_vocab())(["EU", "rejects"])
    assert enc.chars.shape == (2, 7)
    assert enc.chars[0, 2:].tolist() == [0] * 5
    assert [CASINGS[i] for i in enc.casing.tolist()] == ["upper", "lower"]
    assert CASINGS[casing("1996")] == "numeric" and CASINGS[casing("Blackburn")] == "title"


def test_batches_hold_sentences_of_one_length_and_cover_every_sentence_once():
    lengths = [3, 5, 3, 1, 5, 5, 3, 2]
    batches = length_batches(lengths, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)


def test_collate_pads_and_masks_sentences_of_different_lengths():
    encoder = Encoder(small_vocab())
    batch = collate([encoder(["EU", "rejects", "call"]), encoder(["Peter"])])
    assert batch.words.shape == (2, 3) and batch.chars.shape == (2, 3, 7)
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
