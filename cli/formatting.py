"""What the CLI prints for people: an evaluation's table, a model's `tagger info` lines."""
from __future__ import annotations


def format_table(result: dict) -> str:
    """The per-type and overall table of an evaluation result."""
    rows = [f"{'':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for label, v in sorted(result.get("per_type", {}).items()):
        rows.append(f"{label:<12}{100 * v['precision']:>10.2f}{100 * v['recall']:>10.2f}{100 * v['f1']:>10.2f}"
                    f"{v['support']:>10}")
    rows.append(f"{'overall':<12}{100 * result['precision']:>10.2f}{100 * result['recall']:>10.2f}"
                f"{100 * result['f1']:>10.2f}{sum(v['support'] for v in result.get('per_type', {}).values()):>10}")
    rows.append(f"token accuracy {100 * result['accuracy']:.2f}  ({result['sentences']} sentences, "
                f"{result['tokens']} tokens; scored as {result.get('scored_as')})")
    return "\n".join(rows)


def format_info(about: dict) -> str:
    """`tagger info` as aligned `name: value` lines."""
    v = about["vocabulary"]
    f1 = about["best_dev_f1"]
    rows = {
        **({"export": "ONNX (tagger export): predict and evaluate tag through onnxruntime"}
           if about.get("export") == "onnx" else {}),
        "labels": " ".join(about["labels"]),
        "scheme": about["scheme"] or "none (plain tags)",
        "tokenizer": about["tokenizer"],
        "vocabulary": f"{v['words']:,} words, {v['pretrained_only_words']:,} pretrained-only words, "
                      f"{v['characters']:,} characters, {v['tags']} tags",
        "embeddings": about["embeddings"] or "none recorded",
        "context": about["context"] + (f" ({about['context_from']})" if about.get("context_from") else ""),
        "remedies": f"{about['unseen_remedies']} (for pretrained words never seen in training)",
        "temperature": (f"{about['temperature']:.4f} (fitted by tagger calibrate)"
                        if about["temperature"] != 1.0 else "1 (not calibrated: tagger calibrate MODEL DEV fits it)"),
        "best dev F1": f"{100 * f1:.2f} at epoch {about['best_epoch']}" if f1 is not None else "not recorded",
        "trained on": about["training_corpus"] or "not recorded",
        **({"unlabelled": f"{about['unlabeled_text']} (cross-view training)"} if about.get("unlabeled_text") else {}),
        "date": about["date"] or "not recorded",
    }
    return "\n".join(f"{name + ':':<13}{value}" for name, value in rows.items())
