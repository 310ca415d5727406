"""A deliberately slow stage used by the Ctrl-C test (imported in a subprocess)."""
import time

from maskprep.images import read_image
from maskprep.runner import Job, Produced, output_rel


def slow_copy(job: Job) -> list[Produced]:
    time.sleep(0.15)
    return [Produced(rel=output_rel(job, "copy"), data=read_image(job.source), variant="copy")]
