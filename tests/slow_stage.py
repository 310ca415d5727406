"""Stages that stop or kill themselves on cue, for the Ctrl-C and dead-worker tests (run in a
subprocess). Nothing here waits on the clock: a gated file blocks until the test opens the gate."""
import os
import signal
import time
from pathlib import Path

from maskprep.images import read_image
from maskprep.runner import Job, Produced, output_rel


def _copy(job: Job) -> list[Produced]:
    return [Produced(rel=output_rel(job, "copy"), data=read_image(job.source), variant="copy")]


def gated_copy(job: Job) -> list[Produced]:
    """Copies the first ``params['free']`` files (by name) at once; the others wait until the file
    ``params['gate']`` exists, so a run is interrupted part-way however fast the machine is."""
    if sorted(job.params["names"]).index(job.rel) >= job.params["free"]:
        gate = Path(job.params["gate"])
        while not gate.exists():
            time.sleep(0.02)   # polling a file, not timing anything
    return _copy(job)


def killing_copy(job: Job) -> list[Produced]:
    """Kills its own worker with SIGKILL (as the OOM killer does): every time on the files named in
    ``params['kill']``, only the first time on those in ``params['kill_once']`` (a marker file in
    the folder ``params['marks']`` remembers)."""
    if job.rel in job.params["kill"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if job.rel in job.params["kill_once"]:
        marker = Path(job.params["marks"], job.rel.replace("/", "_"))
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return _copy(job)


def audit_scan_killing(job: tuple) -> object:
    """The audit's per-file scan, except that the worker scanning ``KILL_REL`` dies by SIGKILL."""
    if job[1] == KILL_REL:
        os.kill(os.getpid(), signal.SIGKILL)
    return _REAL_SCAN(job)


KILL_REL = "c1/p03.jpg"
_REAL_SCAN = None
