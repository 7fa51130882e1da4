"""What each `tagger` command does, from paths and options to results: the CLI parses and prints around these.
`training` holds `tagger train`; `tagging` holds predict, evaluate, convert and calibrate."""
from tagger.commands.tagging import (calibrate, check_input_file, check_output_file, convert, evaluate, predict,
                                     score_options)
from tagger.commands.training import make_config, parse_features, train

__all__ = ["calibrate", "check_input_file", "check_output_file", "convert", "evaluate", "make_config",
           "parse_features", "predict", "score_options", "train"]
