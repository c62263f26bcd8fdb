"""The training processes' allocator setting (mer_ray/fitting/memory.py): a large tensor made
again after it was freed costs no fresh pages. Counted in page faults, which the machine's load
does not change."""

import json
import subprocess
import sys

import pytest

PROBE = """
import json, resource, torch
from mer_ray.fitting.memory import reuse_freed_memory

def faults_in_steady_state():
    # 64 MB made and freed, again and again. With blocks kept, the heap grows for the first
    # few (4 to 8 here: how many depends on where small allocations land), then is reused.
    for _ in range(20):
        torch.empty(16, 1 << 20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(16, 1 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_in_steady_state()
applied = reuse_freed_memory()
print(json.dumps({"default": default, "applied": applied, "again": reuse_freed_memory(),
                  "reused": faults_in_steady_state()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_tensor_is_reused_without_new_pages():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["applied"] and got["again"]  # set once, and says so when asked again
    pages = 64 * 2**20 // 4096  # of one tensor; 20 were made in each count
    assert got["default"] > 19 * pages  # glibc's own thresholds: fresh pages every time
    assert got["reused"] < 2 * pages  # kept for reuse: (almost) none
