"""The Data Manager's task list, sorted by our uncertainty, with our pre-annotations, in headless Chromium
(playwright-core, from npm, driving /usr/bin/chromium): bench/label_studio_loop.py --screenshot PNG.

It logs in as Label Studio's user, opens a view of the project's tasks (most uncertain first; the prediction
score, results and model versions shown) and takes the PNG once the first task's text is on the page.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ScreenshotFailed(Exception):
    """The screenshot could not be taken: its one line."""


PLAYWRIGHT = r"""
const { chromium } = require('playwright-core');
const [url, user, password, target, png, exe, profile, flags, wait] = process.argv.slice(2);
(async () => {
  const context = await chromium.launchPersistentContext(profile, {executablePath: exe, headless: true,
    args: JSON.parse(flags), viewport: {width: 1500, height: 900}});
  const page = await context.newPage();
  await page.goto(url + '/user/login/');
  await page.fill('input[name=email]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(u => !u.pathname.startsWith('/user/login')), page.click('button[type=submit]')]);
  await page.goto(target);
  await page.getByText(wait).first().waitFor({timeout: 120000});
  await page.waitForTimeout(2000);
  await page.screenshot({path: png});
  await context.close();
})().catch(e => { console.error('error: ' + e.message.split('\n')[0]); process.exit(1); });
"""

SHOWN = ("tasks:id", "tasks:data.text", "tasks:predictions_score", "tasks:predictions_results",
         "tasks:predictions_model_versions", "tasks:total_annotations")


def screenshot(args: argparse.Namespace, client: Any, project: int, url: str, user: str, password: str,
               work: Path) -> None:
    """The Data Manager's task list, sorted by our uncertainty, in headless Chromium (playwright-core)."""
    if not (user and password):
        raise ScreenshotFailed("--screenshot with --url needs --user and --password (to log in)")
    if shutil.which(args.chromium) is None:
        raise ScreenshotFailed(f"no Chromium at {args.chromium}")
    columns = ["tasks:inner_id", "tasks:completed_at", "tasks:cancelled_annotations", "tasks:total_predictions",
               "tasks:annotators", "tasks:annotations_results", "tasks:annotations_ids", "tasks:file_upload",
               "tasks:storage_filename", "tasks:created_at", "tasks:updated_at", "tasks:updated_by",
               "tasks:avg_lead_time", "tasks:draft_exists", "tasks:comment_authors", "tasks:comment_count",
               "tasks:last_comment_updated_at", "tasks:unresolved_comment_count"]
    view = client.views.create(project=project, data={
        "title": "by uncertainty", "ordering": ["-tasks:predictions_score"],
        "hiddenColumns": {"explore": [c for c in columns if c not in SHOWN], "labeling": []}})
    script = work / "screenshot.js"
    script.write_text(PLAYWRIGHT)
    png = Path(args.screenshot).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    target = f"{url}/projects/{project}/data?tab={view.id}"
    first = client.tasks.list(project=project, view=view.id, fields="task_only", page_size=1)
    wait = next(iter(first)).data["text"][:30]
    command = ["node", str(script), url, user, password, target, str(png), args.chromium, str(work / "chromium"),
               json.dumps(CHROMIUM_FLAGS), wait]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NODE_PATH": args.node_modules})
    if done.returncode != 0 or not png.is_file():
        raise ScreenshotFailed(f"screenshot: {done.stderr.strip()[-300:]}")
