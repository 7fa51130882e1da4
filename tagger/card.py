"""The model card (README.md) of a model shared on the Hugging Face Hub: what `tagger card` writes and `tagger
push` uploads. Pure: it takes what a model's config.json and `Tagger.info()` say, and returns the text.

The YAML front matter is huggingface_hub's own (`ModelCardData`, `EvalResult`: the Hub reads `library_name`,
`tags`, `pipeline_tag`, `language`, `datasets` and `model-index` from it); the body says what the model finds,
how it was trained (the command rebuilt from config.json), how to use it and where it stops being right.
huggingface_hub is optional (pip install 'bilstm-tagger[hub]') and imported when a card is made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from tagger.config import Config

TAGS = ["token-classification", "ner", "bilstm-crf"]
LIBRARY = "bilstm-tagger"
_NOT_HYPERPARAMETERS = {"version", "temperature"}  # the config's format version; tagger calibrate's result


@dataclass
class Score:
    """One recorded score of the model: dev (chose the epoch) or test (held out), on `data`."""

    split: str  # "validation" | "test"
    data: str  # the corpus as given to tagger train / evaluate: a file or a Hub dataset name
    value: float  # F1 (entities) or accuracy (plain tags), a fraction
    hub_dataset: str | None = None  # the Hub dataset id when `data` names one


@dataclass
class CardFacts:
    """What a card says, gathered by tagger/commands/hub.py from the model directory (and the Hub's names)."""

    repo_id: str  # "ORG/NAME" the usage snippet loads
    meta: Mapping[str, Any]  # the model's config.json
    about: Mapping[str, Any]  # Tagger.info()
    scores: list[Score] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # Hub datasets the training read
    language: list[str] = field(default_factory=list)  # ISO 639-1 codes, where known
    revision: str | None = None  # the branch pushed to, when not main

    def shown(self, ref: str | None) -> str:
        """How a corpus is named on a public card: a Hub dataset as given, a file by its name alone (a local
        path says nothing to a reader, and may say who trained the model, and where)."""
        if not ref:
            return "unrecorded"
        hub = {*self.datasets, *(s.hub_dataset for s in self.scores if s.hub_dataset)}
        return ref if ref.partition(":")[0] in hub else PurePath(ref).name


def render(facts: CardFacts) -> str:
    """The card: YAML front matter (huggingface_hub's ModelCardData) and a Markdown body."""
    from huggingface_hub import ModelCard

    front = _card_data(facts).to_yaml()
    return str(ModelCard(f"---\n{front}\n---\n\n{_body(facts)}"))


def _card_data(facts: CardFacts):
    from huggingface_hub import EvalResult, ModelCardData

    entities = bool(facts.about.get("model_scheme"))
    metric = "f1" if entities else "accuracy"
    results = [EvalResult(task_type="token-classification", task_name=_task(entities),
                          dataset_type=s.hub_dataset or facts.shown(s.data), dataset_name=facts.shown(s.data),
                          dataset_split=s.split, metric_type=metric, metric_value=round(s.value, 4),
                          metric_name=_metric_name(entities, s.split)) for s in facts.scores]
    return ModelCardData(library_name=LIBRARY, tags=list(TAGS), pipeline_tag="token-classification",
                         language=facts.language or None, datasets=facts.datasets or None,
                         model_name=facts.repo_id.split("/")[-1], eval_results=results or None,
                         metrics=[metric] if results else None)


def _task(entities: bool) -> str:
    return "Named entity recognition" if entities else "Sequence labelling"


def _metric_name(entities: bool, split: str) -> str:
    what = "entity F1 (strict, seqeval)" if entities else "token accuracy"
    return f"{'dev' if split == 'validation' else 'test'} {what}"


def _body(facts: CardFacts) -> str:
    name = facts.repo_id.split("/")[-1]
    parts = [f"# {name}\n", _summary(facts), _labels(facts.about), _scores(facts), _training(facts),
             _usage(facts), _limits(facts)]
    return "\n".join(parts)


def _summary(facts: CardFacts) -> str:
    about = facts.about
    what = "entities" if about.get("model_scheme") else "tags"
    embeddings = about.get("embeddings") or "none"
    train, dev = facts.shown(about.get("training_corpus")), facts.shown(about.get("dev_corpus"))
    return (f"A BiLSTM-CRF sequence labeller ([{LIBRARY}](https://pypi.org/project/{LIBRARY}/)) that finds "
            f"{what} in raw text with exact character offsets. Trained on `{train}` (dev: `{dev}`), pretrained "
            f"word vectors: {embeddings}, tokeniser: "
            f"`{about.get('tokenizer')}`. Its weights are plain safetensors (`model.safetensors`), its "
            "settings and vocabulary JSON: nothing is unpickled.\n")


def _labels(about: Mapping[str, Any]) -> str:
    types = about.get("entity_types") or []
    lines = ["## Labels\n"]
    if types:
        lines.append("Entity types: " + ", ".join(f"`{t}`" for t in types) + ".")
    lines.append(f"Tags ({about.get('scheme') or 'plain labels'}): " + " ".join(f"`{t}`" for t in
                                                                             about.get("labels", [])) + "\n")
    return "\n".join(lines)


def _scores(facts: CardFacts) -> str:
    if not facts.scores:
        return "## Scores\n\nNone recorded.\n"
    entities = bool(facts.about.get("model_scheme"))
    rows = [f"| {_metric_name(entities, s.split)} | `{facts.shown(s.data)}` | {100 * s.value:.2f} |"
            for s in facts.scores]
    epoch = facts.about.get("best_epoch")
    note = f" The dev score chose the epoch ({epoch}): it is optimistic; a test score is not." if epoch else ""
    return "\n".join(["## Scores\n", "| score | data | value |", "|---|---|---|", *rows, "", note.strip(), ""])


def _training(facts: CardFacts) -> str:
    """The training command, rebuilt from config.json: the recorded data and inputs, and the hyperparameters
    that differ from the defaults as a --config recipe."""
    meta = facts.meta
    training = meta.get("training", {})
    command = [f"tagger train {facts.shown(training.get('train')) if training.get('train') else 'TRAIN'} "
               f"--dev {facts.shown(training.get('dev')) if training.get('dev') else 'DEV'} --output model/"]
    options = {"embeddings": "--embeddings", "lexicon": "--lexicon", "bigram_embeddings": "--bigram-embeddings",
               "context": "--context", "unlabeled": "--unlabeled"}
    for key, option in options.items():
        for value in filter(None, str(training.get(key) or "").split(" + ")):
            command.append(f"{option} {value}")
    recipe = _recipe(meta.get("config", {}))
    if recipe:
        command.append("--config recipe.toml")
    text = ["## Training\n", "Rebuilt from `config.json` (local files by their names):\n", "```bash",
            " \\\n    ".join(command), "```"]
    if recipe:
        text += ["\n`recipe.toml` (the settings that differ from the defaults):\n", "```toml", *recipe, "```"]
    temperature = meta.get("config", {}).get("temperature", 1.0)
    if temperature != 1.0:
        text.append(f"\nThen `tagger calibrate model/ DEV` set the scores' temperature to {temperature:.4f}.")
    if training.get("date"):
        text.append(f"\nTrained {training['date']}.")
    return "\n".join(text) + "\n"


def _recipe(config: Mapping[str, Any]) -> list[str]:
    import json

    defaults = Config().to_dict()
    return [f"{key} = {json.dumps(value)}" for key, value in sorted(config.items())
            if key not in _NOT_HYPERPARAMETERS and key in defaults and defaults[key] != value]


def _usage(facts: CardFacts) -> str:
    ref = f"hf://{facts.repo_id}" + (f"@{facts.revision}" if facts.revision else "")
    return "\n".join([
        "## Usage\n", "```bash", f"pip install '{LIBRARY}[hub]'",
        f"echo 'Angela Merkel visited Paris.' | tagger predict {ref} --scores", "```\n", "```python",
        "from tagger import Tagger", "",
        f'tagger = Tagger.load("{ref}")  # downloaded once into the Hugging Face cache',
        'tagger.predict("Angela Merkel visited Paris.", scores=True)  # [{"start", "end", "label", "text", "score"}]',
        "```\n", f"spaCy (`pip install '{LIBRARY}[hub,spacy]'`):\n", "```python", "import spacy", "",
        'nlp = spacy.blank("en")', f'nlp.add_pipe("bilstm_tagger", config={{"model": "{ref}"}})',
        'doc = nlp("Angela Merkel visited Paris.")  # doc.ents; doc.spans["sc"] with their probabilities',
        "```\n"])


def _limits(facts: CardFacts) -> str:
    about = facts.about
    lines = ["## Limits\n",
             f"- It knows only the labels above, as its training corpus (`{facts.shown(about.get('training_corpus'))}`)"
             " drew them: text of another domain, era or style scores lower than the figures above.",
             f"- Raw text is cut into tokens by its `{about.get('tokenizer')}` tokeniser; it was trained on "
             "pre-tokenised sentences, so text tokenised differently is read differently.",
             "- Each sentence is tagged on its own: no document context.",
             "- It needs `bilstm-tagger` to run (numpy; no torch for tagging): it is not a `transformers` model, "
             "and the Hub's inference widget does not run it."]
    if about.get("temperature", 1.0) == 1.0:
        lines.append("- Entity scores are exact under the CRF but not calibrated (`tagger calibrate` on held-out "
                     "data fits a temperature).")
    if not facts.scores:
        lines.append("- No score was recorded with the model.")
    elif not any(s.split == "test" for s in facts.scores):
        lines.append("- Only the dev score is recorded: the model was not scored on held-out test data.")
    return "\n".join(lines) + "\n"
