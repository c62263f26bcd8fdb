"""benchmarks/speedup.py reads each run's phases from what `mer-ray train` prints: the parsing,
on lines as the command prints them (the benchmark itself runs `make demo` four times and is
not a test)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _speedup():
    spec = importlib.util.spec_from_file_location("speedup", REPO / "benchmarks/speedup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_phases_from_the_commands_output():
    from mer_ray.console import duration

    s = _speedup()
    assert s.seconds("1 min 57 s") == 117 and s.seconds("9 s") == 9
    assert s.seconds(duration(725)) == 725 and s.seconds(duration(3725)) == 3720  # to the minute
    log = "\n".join([
        "aligning 96 clips into /w/shards (Ray Data) ...",
        "aligning 96 clips into /w/shards (Ray Data): done in 9 s",
        "computing the frozen-trunk tokens of 96 clips and 1 augmented view(s) of each (in this "
        "process): 5/8 subjects, 9 s so far",
        "computing the frozen-trunk tokens of 96 clips and 1 augmented view(s) of each (in this "
        "process): done in 12 s",
        "[8/8] fold 013: test UF1 0.265 UAR 0.333, 8 epochs, 24 s (0 running)",
        "8 fold(s) trained in 1 min 12 s",
    ])
    assert s.phases(log) == {"align": 9, "tokens": 12, "folds": 72}
    assert s.phases("aligned 96 clips (0 rejected)") == {}  # a phase too short to be reported
