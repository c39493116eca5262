"""The query → Label Studio → teach round trip against a real Label Studio server.

The test starts ``label-studio`` itself on 127.0.0.1 (a free port, a temporary data folder, a
user and API token made at start-up, no version check or analytics: nothing leaves the machine).
Through the SDK it creates a project with the labelling config alscale writes
(:func:`alscale.formats.label_studio_config`), imports the tasks ``alscale query --format
label-studio`` wrote, annotates them as annotators would (one task twice, one skipped, one left
alone), exports the project as JSON and as CSV, and ``alscale teach`` reads both exports: the
labels recorded must be the ones posted, on the right pool ids, with the skipped, unannotated
and doubly annotated tasks counted. Then the same with a multi-label project (``choice="multiple"``).

Label Studio pins its own numpy, so it runs from its own environment: ``ALSCALE_LABEL_STUDIO_PYTHON``
names that environment's interpreter (CI: ``.venv-ls/bin/python``, with ``pip install
"label-studio>=1.23" "label-studio-sdk>=2.1"``); without it, this interpreter's label-studio (the
``labelstudio`` extra) if installed; else the test is skipped. The server and the SDK calls run
in that interpreter, alscale in this one. A fresh server's first start (database migrations)
takes about 1-2.5 minutes on a 2-core machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from alscale.formats import label_studio_config
from alscale.project import ActiveLearner

LS_PYTHON = os.environ.get("ALSCALE_LABEL_STUDIO_PYTHON") or (
    sys.executable if importlib.util.find_spec("label_studio") and importlib.util.find_spec("label_studio_sdk")
    else None)
if LS_PYTHON is None:
    pytest.skip('label-studio is not installed (pip install ".[labelstudio]", or set ALSCALE_LABEL_STUDIO_PYTHON '
                "to the interpreter of an environment that has label-studio and label-studio-sdk)",
                allow_module_level=True)

TOKEN = "a1ca1e0000000000000000000000000000000001"
CLASSES = ["cat", "dog", "bird"]
START_SECONDS = 420  # a bounded wait for the first start (migrations) on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a Label Studio server started for this module, stopped at its end."""
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"LABEL_STUDIO_BASE_DATA_DIR": str(data), "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""})
    cmd = [LS_PYTHON, "-m", "label_studio.server", "start", "--no-browser", "--internal-host", "127.0.0.1",
           "-p", str(port), "--data-dir", str(data), "--username", "annotator@example.com",
           "--password", "alscale-test", "--user-token", TOKEN, "--enable-legacy-api-token"]
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with status {proc.returncode}:\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as err:  # up but not ready: its response holds a socket
                err.close()
            except OSError:
                pass
            if time.monotonic() - started > START_SECONDS:
                pytest.fail(f"label-studio not ready after {START_SECONDS} s:\n{(data / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        print(f"label-studio ready after {time.monotonic() - started:.0f} s")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()


# Run by Label Studio's interpreter: the annotators' side, through the SDK. Writes export.json,
# export.csv and posted.json (pool id -> the class, or the classes, posted) to the out folder.
ANNOTATE = textwrap.dedent("""
    import json, random, sys
    from pathlib import Path
    import httpx
    import label_studio_sdk as sdk

    url, token, out, multilabel = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "multi"
    classes = json.loads(sys.argv[5])
    rnd = random.Random(0)
    with httpx.Client(timeout=120) as http:
        client = sdk.LabelStudio(base_url=url, api_key=token, httpx_client=http)
        project = client.projects.create(title="alscale " + sys.argv[4], label_config=(out / "config.xml").read_text())
        client.projects.import_tasks(id=project.id, request=json.loads((out / "tasks.json").read_text()))
        tasks = sorted(client.tasks.list(project=project.id), key=lambda t: t.id)
        posted = {}

        def result(names):
            return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": names}}]

        for k, task in enumerate(tasks[:-2]):  # the last two: one skipped, one left alone
            if multilabel:
                names = [c for c in classes if rnd.random() < 0.5] if k else []  # the first: no positive class
            else:
                names = [rnd.choice(classes)]
            client.annotations.create(id=task.id, result=result(names))
            if k == 1:  # a second annotator agrees
                client.annotations.create(id=task.id, result=result(names))
            posted[task.data["alscale_id"]] = names if multilabel else names[0]
        client.annotations.create(id=tasks[-2].id, result=[], was_cancelled=True)
        for kind, name in (("JSON", "export.json"), ("CSV", "export.csv")):
            data = b"".join(client.projects.exports.download_sync(id=project.id, export_type=kind,
                                                                  download_all_tasks=True))
            (out / name).write_bytes(data)
        (out / "posted.json").write_text(json.dumps({str(k): v for k, v in posted.items()}))
""")


def _alscale(*args):
    proc = subprocess.run([sys.executable, "-m", "alscale", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def _annotate(server, out, mode):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([LS_PYTHON, "-c", ANNOTATE, server, TOKEN, str(out), mode, json.dumps(CLASSES)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {int(k): v for k, v in json.loads((out / "posted.json").read_text()).items()}


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_query_label_studio_teach_round_trip(server, tmp_path, mode):
    multi = mode == "multi"
    rng = np.random.default_rng(0)
    n = 60
    np.save(tmp_path / "logits.npy", rng.standard_normal((n, len(CLASSES))).astype(np.float32))
    (tmp_path / "pool.csv").write_text("id,image\n" + "".join(f"{i},http://images.invalid/{i}.jpg\n" for i in range(n)))
    (tmp_path / "config.xml").write_text(label_studio_config(CLASSES, multilabel=multi))
    project = tmp_path / "project"
    _alscale("init", "--project", project, "--classes", ",".join(CLASSES), *(["--multilabel"] if multi else []))
    strategy = "random" if multi else "margin"  # (multi-label margins are issue 20 item 1's kernels)
    _alscale("query", "--project", project, "--logits", tmp_path / "logits.npy", "--strategy", strategy,
             "--budget", 8, "--seed", 1, "--format", "label-studio", "--data", tmp_path / "pool.csv",
             "--data-field", "image", "--out", tmp_path / "tasks.json")
    batch = ActiveLearner(project).rounds[-1].ids.tolist()
    posted = _annotate(server, tmp_path, mode)
    assert set(posted) < set(batch) and len(posted) == 6

    taught = _alscale("teach", "--project", project, tmp_path / "export.json")
    assert f"{len(posted)} new labels recorded" in taught.stderr
    assert "8 tasks: 1 not annotated, 1 skipped or cancelled (not taught), 1 with several annotations" in taught.stderr
    labels = ActiveLearner(project).labels
    want = {i: tuple(sorted(CLASSES.index(c) for c in y)) if multi else CLASSES.index(y) for i, y in posted.items()}
    assert dict(zip(labels.ids.tolist(), labels.labels if multi else labels.labels.tolist())) == want
    assert labels.rounds.tolist() == [1] * len(posted)
    # The CSV export (alscale_id, Label Studio's id, label ...) gives the same labels: nothing new,
    # nothing contradicting; so does the JSON export again.
    again = _alscale("teach", "--project", project, tmp_path / "export.csv")
    assert "0 new labels recorded" in again.stderr, (again.stderr, (tmp_path / "export.csv").read_text()[:2000])
    assert "0 new labels recorded" in _alscale("teach", "--project", project, tmp_path / "export.json").stderr
    fresh = tmp_path / "from-csv"
    _alscale("init", "--project", fresh, "--classes", ",".join(CLASSES), "--pool-size", n,
             *(["--multilabel"] if multi else []))
    _alscale("teach", "--project", fresh, tmp_path / "export.csv")
    got = ActiveLearner(fresh).labels
    assert dict(zip(got.ids.tolist(), got.labels if multi else got.labels.tolist())) == want
    status = ActiveLearner(project).status()
    assert status["pending"] == {"round": 1, "ids": 2}
    out = _alscale("query", "--project", project, "--logits", tmp_path / "logits.npy", "--strategy", strategy,
                   "--budget", 5, "--pending", "query").stdout
    assert not set(int(line.split(",")[0]) for line in out.splitlines()[1:]) & set(posted)
