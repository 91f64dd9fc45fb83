"""What torchrun's failure summary shows for a process that stopped on a user error."""

from __future__ import annotations

import json
import os
import time


def report_to_launcher(exc: Exception) -> None:
    """Under torchrun, hand the sentence to the launcher too: its failure summary then shows
    it as the root cause instead of a pointer to the traceback documentation, whichever
    process failed first (torchrun stops the others, perhaps before they print)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {"message": {"message": f"Error: {exc}", "extraInfo": {"timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(record, f)
    except OSError:
        pass  # the launcher's report is a courtesy; the exit code still says it failed
