"""The query → Label Studio → teach round trip against a real Label Studio server.

The test starts ``label-studio`` itself on 127.0.0.1 (a free port, a temporary data folder, a
user and API token made at start-up, no version check or analytics: nothing leaves the machine),
creates a project with the SDK, imports the tasks ``alscale query --format label-studio`` wrote,
posts annotations as an annotator would, exports the project as JSON and teaches that export
with ``alscale teach``: the labels recorded must be the ones posted. It needs the ``labelstudio``
extra (``pip install ".[labelstudio]"`` from a checkout) and is skipped without it. A fresh server's
first start (database migrations) takes about 1-2.5 minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("label_studio", reason="label-studio is not installed (pip install \".[labelstudio]\")")
sdk = pytest.importorskip("label_studio_sdk", reason="label-studio-sdk is not installed (pip install \".[labelstudio]\")")
import httpx  # noqa: E402  (a dependency of label-studio-sdk)

from alscale.project import ActiveLearner  # noqa: E402

TOKEN = "a1ca1e0000000000000000000000000000000001"
CLASSES = ["cat", "dog", "bird"]
START_SECONDS = 420  # a bounded wait for the first start (migrations) on a busy 2-core machine
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          + "".join(f'<Choice value="{c}"/>' for c in CLASSES) + "</Choices></View>")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a Label Studio server started for this module, stopped at its end."""
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LATEST_VERSION_CHECK": "false",
           "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    cmd = [sys.executable, "-m", "label_studio.server", "start", "--no-browser", "--internal-host", "127.0.0.1",
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


def _alscale(*args):
    proc = subprocess.run([sys.executable, "-m", "alscale", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_query_label_studio_teach_round_trip(server, tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    np.save(tmp_path / "logits.npy", rng.standard_normal((n, len(CLASSES))).astype(np.float32))
    (tmp_path / "pool.csv").write_text("id,image\n" + "".join(f"{i},http://images.invalid/{i}.jpg\n" for i in range(n)))
    project = tmp_path / "project"
    _alscale("query", "--project", project, "--new", "--logits", tmp_path / "logits.npy", "--strategy", "margin", "--budget", 8,
             "--format", "label-studio", "--data", tmp_path / "pool.csv", "--data-field", "image",
             "--classes", ",".join(CLASSES), "--out", tmp_path / "tasks.json")
    batch = ActiveLearner(project).rounds[-1].ids.tolist()

    with httpx.Client(timeout=120) as http:
        _round_trip(sdk.LabelStudio(base_url=server, api_key=TOKEN, httpx_client=http), project, tmp_path, batch, rng)


def _round_trip(client, project, tmp_path, batch, rng):
    ls_project = client.projects.create(title="alscale round 1", label_config=CONFIG)
    client.projects.import_tasks(id=ls_project.id, request=json.loads((tmp_path / "tasks.json").read_text()))
    tasks = list(client.tasks.list(project=ls_project.id))
    assert sorted(t.data["alscale_id"] for t in tasks) == sorted(batch)
    assert all(t.data["image"] == f"http://images.invalid/{t.data['alscale_id']}.jpg" for t in tasks)

    posted = {}
    for task in tasks[:-1]:  # the last task stays unlabeled
        name = CLASSES[int(rng.integers(len(CLASSES)))]
        client.annotations.create(id=task.id, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                       "value": {"choices": [name]}}])
        posted[task.data["alscale_id"]] = CLASSES.index(name)
    export = b"".join(client.projects.exports.download_sync(id=ls_project.id, export_type="JSON",
                                                            download_all_tasks=True))
    (tmp_path / "export.json").write_bytes(export)

    taught = _alscale("teach", "--project", project, tmp_path / "export.json")
    assert f"{len(posted)} new labels recorded" in taught.stderr
    labels = ActiveLearner(project).labels
    assert dict(zip(labels.ids.tolist(), labels.labels.tolist())) == posted
    assert labels.rounds.tolist() == [1] * len(posted)
    # The same export again records nothing twice; the next query skips every labeled id.
    assert "0 new labels recorded" in _alscale("teach", "--project", project, tmp_path / "export.json").stderr
    out = _alscale("query", "--project", project, "--logits", tmp_path / "logits.npy", "--strategy", "margin",
                   "--budget", 5, "--pending", "query").stdout
    assert not set(int(line.split(",")[0]) for line in out.splitlines()[1:]) & set(posted)
