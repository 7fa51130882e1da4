"""Tagging: numpy only, never torch. The Tagger, its engine (the network's forward pass), Viterbi,
forward-backward (confidence, n-best, calibration), streaming over files, writers and the doors out
(a Ray cluster). Imports tagger's core and tagger.reports, never tagger.training."""
