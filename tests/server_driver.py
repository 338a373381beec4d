"""A child process for the server restart test: the real server over a scripted LM whose every call
sleeps SLEEP seconds, so the parent can SIGKILL it while a compile job runs (tests/test_server_restart.py).

Usage: ``python tests/server_driver.py HOME PORT SLEEP``. Serves with the API key ``KEYS[0]`` of
server_helpers until killed or interrupted.

Not a test module (no ``test_`` prefix): pytest never collects it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import uvicorn
from server_helpers import KEYS, script, workspace

from personaagent.server import create_app
from personaagent.testing import ScriptedLM


def main() -> None:
    home, port, sleep = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

    def slow(request):
        time.sleep(sleep)
        return script(request)

    app = create_app(workspace(home, lm=ScriptedLM(slow)), api_keys=KEYS, close_workspace=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
