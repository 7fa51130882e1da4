"""What each `tagger` command does, from paths and options to results: the CLI parses and prints around these.
`training` holds `tagger train`; `tagging` holds predict, evaluate, convert and calibrate; `selecting` holds
select; `describing` holds info and plot."""
from tagger.commands.describing import info, plot
from tagger.commands.selecting import select
from tagger.commands.tagging import (calibrate, check_input_file, check_output_file, convert, evaluate,
                                     output_format_for, predict, predict_on_ray, score_options)
from tagger.commands.training import make_config, parse_features, train

__all__ = ["calibrate", "check_input_file", "check_output_file", "convert", "evaluate", "info", "make_config",
           "output_format_for", "parse_features", "plot", "predict", "predict_on_ray", "score_options", "select",
           "train"]
