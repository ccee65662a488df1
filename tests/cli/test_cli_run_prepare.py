"""`supportbot run --prepare` on an empty data dir: migrates, builds an index, serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import MINI_DOCS


def test_run_prepare_migrates_builds_and_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        {
            "SUPPORTBOT_DATA_DIR": str(data),
            "SUPPORTBOT_DEVICE": "cpu",
            "SUPPORTBOT_WEB_PORT": "0",
            "SUPPORTBOT_DOCS_DIR": str(MINI_DOCS),
            "SUPPORTBOT_INCLUDE_KERAS_API": "false",
            "SUPPORTBOT_REINDEX_SCHEDULE": "off",
            "HF_HUB_OFFLINE": "1",
        }
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("supportbot")), "run", "--prepare"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        found = None
        while found is None and time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            found = re.search(r"Local room: (http://\S+)/room", text)
            assert proc.poll() is None, text[-3000:]
            time.sleep(0.2)
        assert found, log_path.read_text(errors="replace")[-3000:]
        text = log_path.read_text(errors="replace")
        assert "building one" in text
        assert re.search(r"supportbot\.progress: embed: (\d+)/\1 \(100%\)", text), text[-3000:]
        assert (data / "indexes" / "CURRENT").is_file()
        with urllib.request.urlopen(found.group(1) + "/healthz", timeout=10) as resp:
            assert resp.status == 200
        status = subprocess.run(
            [str(Path(sys.executable).with_name("supportbot")), "db", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
