"""Training: torch. The trainable network and its CRF loss, the training loop, checkpoints, data-parallel
processes. May import tagger.tagging (dev scores come from the numpy engine); nothing below imports it."""
