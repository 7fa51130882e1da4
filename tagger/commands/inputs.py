"""`tagger train`'s optional inputs (--embeddings FILE | jieba | lm:DIR, --bigram-embeddings, --lexicon, --context):
checked before the corpus is read, so that a typo costs no wait, and loaded after it into
tagger/training/setup.py's Inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tagger.errors import ConfigError

LM = "lm:"  # --embeddings lm:DIR: a `tagger lm` character LM, read as contextual embeddings (a context encoder)


def split_lm(embeddings: Path | Sequence[Path] | None) -> tuple[list[Path] | None, str | None]:
    """--embeddings as (vector files or None, the `lm:DIR` entry or None); ConfigError for two LMs."""
    given = [str(p) for p in vector_files(embeddings)]
    lms = [p for p in given if p.startswith(LM)]
    if len(lms) > 1:
        raise ConfigError("one --embeddings lm:DIR at a time")
    if lms and not lms[0].removeprefix(LM):
        raise ConfigError("--embeddings lm: needs the directory `tagger lm` wrote: lm:DIR")
    vectors = [Path(p) for p in given if not p.startswith(LM)]
    return vectors or None, lms[0] if lms else None


def is_lm(context: str | None) -> bool:
    return context is not None and str(context).startswith(LM)


def vector_files(embeddings: Path | Sequence[Path] | None) -> list[Path]:
    """--embeddings as a list: none, one file (or "jieba"), or several whose vectors are stacked."""
    if embeddings is None or isinstance(embeddings, (str, Path)):
        return [Path(embeddings)] if embeddings else []
    return [Path(p) for p in embeddings]


def check_inputs(embeddings: Path | Sequence[Path] | None, bigram_embeddings: Path | None, lexicon: str | None,
                  context: str | None) -> None:
    """InputError for a missing vectors file, lexicon or LAC model, found without reading any of them."""
    from tagger import lac
    from tagger.embeddings import check_vectors_file
    from tagger.lexicon import lexicon_path

    files = vector_files(embeddings)
    jieba_vectors = any(lac.names_jieba(p) for p in files)
    if jieba_vectors and len(files) > 1:
        raise ConfigError("--embeddings jieba cannot be stacked with other vectors: give it alone")
    for path in [] if jieba_vectors else files:
        check_vectors_file(path)
    if is_lm(context):
        from tagger.training.lm_dir import check_lm_dir

        check_lm_dir(Path(str(context).removeprefix(LM)))
    if jieba_vectors or (context is not None and not is_lm(context)):
        lac.lac_dir(context if context is not None else lac.JIEBA)
    if bigram_embeddings is not None:
        check_vectors_file(bigram_embeddings)
    if lexicon is not None:
        lexicon_path(lexicon)


def load_inputs(embeddings: Path | Sequence[Path] | None, bigram_embeddings: Path | None, lexicon: str | None,
                 context: str | None, reporter):
    """The optional inputs a new training starts from (tagger/training/setup.py's Inputs), each read only
    when asked for: tagger/embeddings.py, tagger/lexicon.py, tagger/lac.py."""
    from tagger import lac
    from tagger.embeddings import load_vectors, stack_vectors
    from tagger.lexicon import read_lexicon
    from tagger.training.setup import Inputs

    vectors = bigram_vectors = words = encoder = None
    files = vector_files(embeddings)
    jieba_vectors = any(lac.names_jieba(p) for p in files)
    kind = "lm" if is_lm(context) else "lac"
    if is_lm(context):
        from tagger.training.lm_dir import read_lm

        encoder, context = read_lm(str(context).removeprefix(LM)), None
        reporter.message(f"character LM: {len(encoder[0])} characters, "
                         f"{encoder[1]['context.0.forward.weight_hh'].shape[1]} units a direction")
    if jieba_vectors or context is not None:
        chars, tensors = lac.from_jieba(context if context is not None else lac.JIEBA)
        encoder = (chars, tensors) if context is not None else encoder
        if jieba_vectors:
            vectors = lac.char_vectors(chars, tensors["context.embedding"])
    if files and not jieba_vectors:
        sets = [load_vectors(p) for p in files]
        vectors = stack_vectors(sets) if len(sets) > 1 else sets[0]
        if len(sets) > 1:
            reporter.message(f"stacked vectors: {' + '.join(str(m.shape[1]) for _, m in sets)} = "
                             f"{vectors[1].shape[1]} dimensions, {len(vectors[0]):,} words")
    if bigram_embeddings is not None:
        bigram_vectors = load_vectors(bigram_embeddings)
    if lexicon is not None:
        words = read_lexicon(lexicon)
        reporter.message(f"lexicon: {len(words):,} words, the longest {words.longest} characters")
    return Inputs(vectors=vectors, lexicon=words, bigram_vectors=bigram_vectors, context=encoder,
                  context_kind=kind)
