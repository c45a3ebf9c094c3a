"""The kernels' outputs on a fixed set of inputs are the same bits as recorded (per CPU
instruction set, tests/bitwise_cases.py): refactorings keep every result."""

import json
import os
import subprocess
import sys

import pytest

import bitwise_cases

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bitwise_cases
from focal_op import _focal_core as core
print(json.dumps({"isa": core.cpu_isa(), "digests": bitwise_cases.digests(core)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_outputs_keep_their_recorded_bits(isa):
    path = bitwise_cases.data_path(isa)
    if not os.path.exists(path):
        pytest.skip(f"no recorded outputs for {isa}")
    env = dict(os.environ, FOCAL_OP_CPU_ISA=isa, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SCRIPT, os.path.dirname(os.path.abspath(__file__))], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["isa"] != isa:
        pytest.skip(f"this CPU has no {isa}")
    with open(path) as f:
        recorded = json.load(f)
    changed = sorted(key for key, digest in recorded.items() if result["digests"].get(key) != digest)
    assert set(result["digests"]) == set(recorded)
    assert not changed, f"{len(changed)} of {len(recorded)} outputs changed, e.g. {changed[:5]}"
