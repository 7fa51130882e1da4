"""The tagging engine: numpy only, never torch. The Tagger, its engine (the network's forward pass), Viterbi,
forward-backward (confidence, n-best, calibration), selection (what to label next), streaming over files and
pipes, writers. Imports tagger's core and tagger.reports, never tagger.training or the doors (tagger.serving)."""
