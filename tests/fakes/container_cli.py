"""A fake ``docker``/``podman`` CLI: records each call's argv (one JSON list per line in
``$FAKE_CLI_LOG``) and answers like the real one for what the sandbox asks.

State lives in the log itself: an image exists once it was built, a container runs once it
was started and until it is stopped or removed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    log = Path(os.environ["FAKE_CLI_LOG"])
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    with log.open("a") as out:
        out.write(json.dumps(argv) + "\n")
    match argv:
        case ["image", "inspect", tag]:
            return 0 if any(c[:1] == ["build"] and tag in c for c in calls) else 1
        case ["inspect", "--format", _, name]:
            state = "false"
            for call in calls:
                if call == ["start", name]:
                    state = "true"
                elif call[:1] in (["stop"], ["rm"]) and name in call:
                    state = "false"
            print(state)
            return 0
        case ["exec", "--workdir", workdir, _name, *command]:
            print(f"ran {' '.join(command)} in {workdir}")
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
