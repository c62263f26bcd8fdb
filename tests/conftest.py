import os
from pathlib import Path

import pytest

from mer_ray.cluster import keep_idle_workers

os.environ.setdefault("RAY_TMPDIR", "/tmp/merray")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# Every Ray the tests start (the session's, the simulated cluster's, the job-submit head)
# keeps its idle worker processes instead of starting new ones for each short task.
keep_idle_workers(2)
Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(config, items):
    """Tests that start Ray (the session's, through any fixture) are marked ``ray``: the default
    run (``make test-fast``) leaves them out, ``make test`` runs everything."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray for the whole test session (ray.init costs seconds here)."""
    import ray
    import ray.data

    if not ray.is_initialized():
        # address="local": a Ray of the session's own, whatever another (or a crashed) Ray
        # on this machine left behind
        ray.init(address="local", num_cpus=2, object_store_memory=400 * 1024 * 1024,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_samm(tmp_path_factory):
    """A small synthetic SAMM-layout set (3 subjects, 3-class), shared by the data tests."""
    from mer_ray.data.synth import generate

    root = tmp_path_factory.mktemp("synth_samm")
    generate(root, "samm", subjects=3, clips_per_class=1, protocol="3class", seed=1,
             progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_shards(synth_samm, ray_session, tmp_path_factory):
    """Aligned shards of ``synth_samm`` at S=28, T=4 (a ``data.shards.Shards``): the LOSO and
    sweep tests' data."""
    from mer_ray.config import DataConfig
    from mer_ray.data.choice import ensure_shards

    return ensure_shards("samm", synth_samm, "3class", DataConfig(frames=4, size=28),
                         workdir=tmp_path_factory.mktemp("loso_shards"), synthetic=True)
