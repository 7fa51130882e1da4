"""The annotation loop against a real Label Studio, end to end, each step timed (issue 37, section 3).

    /work/ls-venv/bin/python bench/label_studio_loop.py --tasks 300 --screenshot docs/label-studio-tasks.png

Run it with the Python of a venv holding label-studio and label-studio-sdk (bench/label_studio_requirements.txt);
tagger itself runs from the checkout's .venv (--tagger). It starts Label Studio (SQLite, a temporary data
directory, a user from LABEL_STUDIO_USERNAME / LABEL_STUDIO_PASSWORD, made up when unset) unless --url is
given; trains a small model on 300 sentences of samples/en/train.txt unless --model is given; starts
`tagger serve MODEL --label-studio WORKDIR --dev samples/en/dev.txt --token-file F`; creates a project with
an NER labelling config, connects the server as its ML backend (HTTP Basic, the token as the password) and
as a webhook (a bearer token); imports --tasks tasks (samples/en/test.txt's sentences, tokens joined by
spaces: synthetic text). Then, through the SDK, it checks: the predictions have regions and scores; the tasks
sort by our uncertainty; annotations (the sample's gold spans, on the most uncertain tasks) reach the
webhook (annotations.jsonl, train.txt); training runs (Label Studio's train action: START_TRAINING);
the model version changes; the next tasks' predictions change. A failed check: `error: ...`, exit 1.

A Label Studio of one's own (--url, --api-key: a legacy token or a personal access token) must let the
ML backend and the webhook reach localhost: start it with SSRF_PROTECTION_ENABLED=false and
ML_BLOCK_LOCAL_IP=false. Label Studio 1.23 refuses legacy tokens unless LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN
was true when its organisation was made (`label-studio start --enable-legacy-api-token`); this script sets it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from label_studio_processes import NotUp, free_port, get_json, start_label_studio, started, wait_up
from label_studio_screenshot import ScreenshotFailed, screenshot

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "en"


class CheckFailed(Exception):
    """A check of the loop failed: its one line."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@contextmanager
def step(name: str) -> Iterator[dict]:
    """Time a step and print it with what it reports (`info`)."""
    info: dict = {}
    start = time.perf_counter()
    yield info
    detail = " ".join(f"{k}={v}" for k, v in info.items())
    print(f"{name:<34} {time.perf_counter() - start:8.1f} s  {detail}", flush=True)


# -- the tasks: the sample's sentences and their gold spans ---------------------------------------------------


def read_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) of each sentence of a two-column CoNLL file."""
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            token, tag = line.split()[0], line.split()[-1]
            tokens.append(token)
            tags.append(tag)
        elif tokens:
            sentences.append((tokens, tags))
            tokens, tags = [], []
    return sentences


def gold_spans(tokens: list[str], tags: list[str]) -> list[tuple[str, int, int]]:
    """(label, start, end) character spans of IOB2 tags over the tokens joined by single spaces."""
    spans, offset, current = [], 0, None
    for token, tag in zip(tokens, tags):
        prefix, _, label = tag.partition("-")
        if current and (prefix != "I" or label != current[0]):
            spans.append(tuple(current))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = [label, offset, offset + len(token)]
        elif prefix == "I":
            current[2] = offset + len(token)
        offset += len(token) + 1
    return spans + ([tuple(current)] if current else [])


def label_config(labels: list[str]) -> str:
    """The NER labelling config: a Labels control over a Text object reading data.text."""
    options = "".join(f'<Label value="{x}"/>' for x in labels)
    return (f'<View><Labels name="label" toName="text">{options}</Labels>'
            '<Text name="text" value="$text"/></View>')


def train_base(args: argparse.Namespace, work: Path) -> Path:
    """A deliberately weak model (300 sentences, --epochs 3): the annotations then have something to teach."""
    sentences = read_sentences(SAMPLES / "train.txt")[:300]
    data = work / "base-train.txt"
    data.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(*s)) + "\n" for s in sentences), encoding="utf-8")
    model = work / "base-model"
    command = [args.tagger, "train", str(data), "--dev", str(SAMPLES / "dev.txt"), "--config",
               str(ROOT / "configs" / "sample.toml"), "--epochs", "3", "-o", str(model), "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    check(done.returncode == 0, f"tagger train failed: {done.stderr.strip()[-300:]}")
    return model


# -- the loop through the SDK ---------------------------------------------------------------------------------


def predictions(client: Any, project: int) -> dict[int, dict]:
    """Each task's latest prediction: {task id: {"score", "model_version", "result"}}."""
    latest: dict[int, dict] = {}
    for p in client.predictions.list(project=project):
        if p.task not in latest or p.id > latest[p.task]["id"]:
            latest[p.task] = {"id": p.id, "score": p.score, "model_version": p.model_version, "result": p.result}
    return latest


def retrieve(client: Any, project: int, tasks: list[int], version: str) -> None:
    """The Data Manager's "Retrieve Predictions" action: Label Studio asks the ML backend (/setup, /predict);
    then the project shows (and sorts by) this model version's predictions. Label Studio 1.23 selects the
    backend's title when it is connected, which no prediction carries: no task would have a score to sort by.
    Selecting the version is Settings > Annotation > Prelabeling's choice, made again after each retraining."""
    client.actions.create(id="retrieve_tasks_predictions", project=project,
                          selected_items={"all": False, "included": tasks})
    client.projects.update(id=project, model_version=version)


def ordered_ids(client: Any, project: int) -> list[int]:
    """The task ids as the Data Manager sorts them by prediction score, most uncertain first."""
    query = json.dumps({"ordering": ["-tasks:predictions_score"]})
    return [t.id for t in client.tasks.list(project=project, query=query, fields="task_only", page_size=100)]


def check_predictions(found: dict[int, dict], tasks: list[int], labels: list[str]) -> dict:
    """Every task has a prediction, a task score in [0, 1], and regions with offsets, a known label and an
    entity score in [0, 1]: what the step reports (regions, model versions)."""
    check(set(found) >= set(tasks), f"{len(set(tasks) - set(found))} tasks have no prediction")
    regions = [r for t in tasks for r in found[t]["result"]]
    check(len(regions) > 0, "no prediction has a region")
    for r in regions:
        v = r.get("value", {})
        check(r.get("type") == "labels" and 0 <= v.get("start", -1) < v.get("end", -1) and
              v.get("labels", [None])[0] in labels and 0.0 <= r.get("score", -1) <= 1.0, f"a bad region: {r}")
    scores = [found[t]["score"] for t in tasks]
    check(all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores), "a task's score is not in [0, 1]")
    return {"regions": len(regions), "versions": sorted({found[t]["model_version"] for t in tasks})}


def annotate(client: Any, tasks: list[int], gold: dict[int, list], labels_of: str) -> None:
    """Submit each task's gold spans as an annotator would (POST /api/tasks/ID/annotations)."""
    for task in tasks:
        result = [{"from_name": labels_of, "to_name": "text", "type": "labels",
                   "value": {"start": s, "end": e, "labels": [label]}} for label, s, e in gold[task]]
        client.annotations.create(id=task, result=result, was_cancelled=False)


def wait_for(condition: Any, seconds: float, message: str) -> None:
    """Poll `condition` until it holds; CheckFailed(message) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        check(time.monotonic() < deadline, message)
        time.sleep(0.5)


@dataclass
class Session:
    """What the checks share: the SDK client, the project, its ML backend, our backend's URL, token and work
    directory, the tasks (ids in import order) with their gold spans, and the labels."""

    client: Any
    project: int
    ml: int
    ours: str
    token: str
    backend: Path
    tasks: list[int]
    gold: dict[int, list]
    labels: list[str]

    def health(self) -> dict:
        return get_json(f"{self.ours}/health", self.token)


def setup(stack: ExitStack, args: argparse.Namespace, work: Path) -> tuple[Session, tuple[str, str, str]]:
    """Label Studio, a model, `tagger serve --label-studio`, the project (backend, webhook) and its tasks."""
    from label_studio_sdk import LabelStudio

    with step("start label studio") as info:
        if args.url:
            url, key, user, password = args.url.rstrip("/"), args.api_key, args.user, args.password
        else:
            url, key, user, password = start_label_studio(stack, args, work)
        info["url"] = url
    with step("model") as info:
        model = Path(args.model) if args.model else train_base(args, work)
        info["model"] = model
    token, port, backend = secrets.token_hex(16), free_port(), work / "backend"
    (work / "token").write_text(token)
    ours = f"http://127.0.0.1:{port}/labelstudio"
    with step("start tagger serve --label-studio"):
        command = [args.tagger, "serve", str(model), "--label-studio", str(backend), "--dev", str(SAMPLES / "dev.txt"),
                   "--token-file", str(work / "token"), "--port", str(port), "--timeout", "120", "-q"]
        log = work / "tagger-serve.log"
        wait_up(f"{ours}/health", 300, stack.enter_context(started(command, log)), log, token)
    client = LabelStudio(base_url=url, api_key=key, timeout=300)
    sentences = read_sentences(SAMPLES / "test.txt")
    check(args.tasks <= len(sentences), f"--tasks: samples/en/test.txt has {len(sentences)} sentences")
    labels = sorted({t[2:] for _, tags in sentences for t in tags if t != "O"})
    with step("create project, ML backend, webhook") as info:
        project = client.projects.create(title="tagger loop", label_config=label_config(labels)).id
        ml = client.ml.create(project=project, url=ours, title="tagger", auth_method="BASIC_AUTH",
                              basic_auth_user="labelstudio", basic_auth_pass=token, is_interactive=False).id
        client.webhooks.create(url=f"{ours}/webhook", project=project, headers={"Authorization": f"Bearer {token}"},
                               send_payload=True, send_for_all_actions=False,
                               actions=["ANNOTATION_CREATED", "ANNOTATION_UPDATED"])
        info |= {"project": project, "ml_backend": ml}
    with step(f"import {args.tasks} tasks") as info:
        texts = [" ".join(tokens) for tokens, _ in sentences[:args.tasks]]
        client.projects.import_tasks(id=project, request=[{"text": t} for t in texts])
        tasks = sorted(t.id for t in client.tasks.list(project=project, fields="task_only", page_size=100))
        check(len(tasks) == args.tasks, f"{len(tasks)} tasks imported, not {args.tasks}")
        info["tasks"] = len(tasks)
    gold = {task: gold_spans(*sentences[i]) for i, task in enumerate(tasks)}
    return Session(client, project, ml, ours, token, backend, tasks, gold, labels), (url, user, password)


def first_round(s: Session) -> tuple[dict[int, dict], list[int]]:
    """Predictions for every task, and the tasks in the Data Manager's order by prediction score."""
    with step("predictions (retrieve, all tasks)") as info:
        retrieve(s.client, s.project, s.tasks, s.health()["model_version"])
        first = predictions(s.client, s.project)
        info |= check_predictions(first, s.tasks, s.labels)
        check(len(info["versions"]) == 1, f"several model versions: {info['versions']}")
    with step("tasks sorted by uncertainty") as info:
        order = ordered_ids(s.client, s.project)
        scores = [first[t]["score"] for t in order]
        check(order != s.tasks and scores == sorted(scores, reverse=True),
              "the Data Manager's order is not our uncertainty's")
        info |= {"most_uncertain": round(scores[0], 3), "least": round(scores[-1], 3)}
    return first, order


def annotate_and_train(s: Session, chosen: list[int], train_timeout: float) -> tuple[str, str]:
    """Annotations through the API reach our webhook; Label Studio's train action trains a new model, swapped
    in: (the version before, the version after)."""
    with step(f"annotate {len(chosen)} (webhook)") as info:
        annotate(s.client, chosen, s.gold, "label")
        jsonl, train = s.backend / "annotations.jsonl", s.backend / "train.txt"
        wait_for(lambda: jsonl.is_file() and len(jsonl.read_text().splitlines()) >= len(chosen), 60,
                 f"{jsonl} did not reach {len(chosen)} annotations")
        blocks = train.read_text().count("\n\n")
        check(blocks >= len(chosen), f"{train} has {blocks} sentences, not {len(chosen)}")
        info |= {"annotations.jsonl": len(jsonl.read_text().splitlines()), "train.txt_sentences": blocks}
    with step("train (Label Studio's train action)") as info:
        before = s.health()["model_version"]
        s.client.ml.train(id=s.ml)
        wait_for(lambda: s.health()["training"]["state"] not in ("idle", "running"), train_timeout,
                 "the training did not end in time")
        health = s.health()
        info |= {"state": health["training"]["state"], "message": repr(health["training"]["message"])}
        check(health["training"]["state"] == "swapped", f"training: {health['training']}")
    with step("model version changes") as info:
        check(health["model_version"] != before, f"the model version stayed {before}")
        info |= {"before": before, "after": health["model_version"]}
    return before, health["model_version"]


def second_round(s: Session, first: dict[int, dict], rest: list[int], version: str) -> None:
    """The next tasks' predictions come from the new model, and differ."""
    with step(f"predictions of the {len(rest)} next tasks") as info:
        retrieve(s.client, s.project, rest, version)
        second = predictions(s.client, s.project)
        info |= check_predictions(second, rest, s.labels)
        check(info["versions"] == [version], f"the next tasks' predictions come from {info['versions']}")
        changed = sum(1 for t in rest if (second[t]["score"], second[t]["result"]) != (first[t]["score"],
                                                                                        first[t]["result"]))
        check(changed > 0, "no prediction changed")
        check(s.client.ml.get(id=s.ml).model_version == version, "Label Studio's ML backend has another version")
        info["changed"] = f"{changed}/{len(rest)}"


def loop(stack: ExitStack, args: argparse.Namespace, work: Path) -> None:
    session, (url, user, password) = setup(stack, args, work)
    first, order = first_round(session)
    chosen = order[:args.annotate]
    _, after = annotate_and_train(session, chosen, args.train_timeout)
    second_round(session, first, [t for t in session.tasks if t not in set(chosen)], after)
    if args.screenshot:
        with step("screenshot") as info:
            try:
                screenshot(args, session.client, session.project, url, user, password, work)
            except ScreenshotFailed as e:
                raise CheckFailed(str(e)) from None
            info["png"] = args.screenshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks to import")
    parser.add_argument("--annotate", type=int, default=60, help="most uncertain tasks to annotate")
    parser.add_argument("--model", help="a trained model (default: train a small one)")
    parser.add_argument("--url", help="a running Label Studio (default: start one)")
    parser.add_argument("--api-key", default=os.environ.get("LABEL_STUDIO_API_KEY"), help="with --url")
    parser.add_argument("--user", default=os.environ.get("LABEL_STUDIO_USERNAME"), help="with --url: to log in")
    parser.add_argument("--password", default=os.environ.get("LABEL_STUDIO_PASSWORD"), help="with --url")
    parser.add_argument("--tagger", default=str(ROOT / ".venv" / "bin" / "tagger"))
    parser.add_argument("--screenshot", help="PNG of the Data Manager's task list")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--node-modules", default="/work/ls-node/node_modules", help="holding playwright-core")
    parser.add_argument("--start-timeout", type=float, default=900, help="seconds for Label Studio to start")
    parser.add_argument("--train-timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, models)")
    args = parser.parse_args()
    if args.url and not args.api_key:
        sys.exit("error: --url needs --api-key (or LABEL_STUDIO_API_KEY)")
    if not Path(args.tagger).is_file():
        sys.exit(f"error: {args.tagger}: no such file (--tagger: the checkout's .venv/bin/tagger)")
    if args.model and not Path(args.model, "config.json").is_file():
        sys.exit(f"error: {args.model}: not a model directory (--model)")
    if importlib.util.find_spec("label_studio_sdk") is None:
        sys.exit("error: no label_studio_sdk in this Python: run it with the venv's "
                 "(bench/label_studio_requirements.txt)")
    work = Path(tempfile.mkdtemp(prefix="ls-loop-"))
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            loop(stack, args, work)
    except (CheckFailed, NotUp) as e:
        sys.exit(f"error: {e} (logs: {work})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'whole loop':<34} {time.perf_counter() - start:8.1f} s", flush=True)


if __name__ == "__main__":
    main()
