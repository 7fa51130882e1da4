"""What each `tagger` command does, from paths and options to results: the CLI parses and prints around these.
`fitting` holds `tagger train`; `predicting` holds predict, evaluate, convert and calibrate; `selecting` holds
select; `describing` holds info and plot.

Each name is imported from its module on first use (PEP 562), so that `tagger predict` does not import
training's setup, selection or plotting: `from tagger.commands import train` and `commands.train(...)` work
as before."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and import-linter; imported lazily below
    from tagger.commands.describing import info, plot
    from tagger.commands.fitting import make_config, parse_features, train
    from tagger.commands.predicting import (calibrate, convert, evaluate, output_format_for, predict, predict_on_ray,
                                            score_options)
    from tagger.commands.selecting import select

_HOMES = {"info": "describing", "plot": "describing", "select": "selecting",
          "make_config": "fitting", "parse_features": "fitting", "train": "fitting",
          **{name: "predicting" for name in ("calibrate", "convert", "evaluate", "output_format_for", "predict",
                                             "predict_on_ray", "score_options")}}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """A command's function, its module imported the first time the name is asked for (then kept here)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
