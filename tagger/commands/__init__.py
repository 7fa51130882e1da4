"""What each `tagger` command does, from paths and options to results: the CLI parses and prints around these.
`fitting` holds `tagger train`; `predicting` holds predict, evaluate, convert and calibrate; `selecting` holds
select; `describing` holds info and plot."""
from tagger.commands.describing import info, plot
from tagger.commands.selecting import select
from tagger.commands.predicting import (calibrate, convert, evaluate,
                                     output_format_for, predict, predict_on_ray, score_options)
from tagger.commands.fitting import make_config, parse_features, train

__all__ = ["calibrate", "convert", "evaluate", "info", "make_config",
           "output_format_for", "parse_features", "plot", "predict", "predict_on_ray", "score_options", "select",
           "train"]
