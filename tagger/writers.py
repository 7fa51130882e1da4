"""The public writers' registry, `from tagger.writers import WRITERS`: the registry itself is tagger/tagging/writers.py."""
from tagger.tagging.writers import WRITERS, Writer, register

__all__ = ["WRITERS", "Writer", "register"]
