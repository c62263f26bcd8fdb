"""Stored runs as a comparison: the rows ``mer-ray compare`` prints, made from runs (and
scored files) that are already on disk, for the Python API (``mr.compare``) and the
leaderboard site."""

from __future__ import annotations

from ..config import ExperimentConfig
from ..integrity import flags
from ..storage import Storage
from .compare import Entry, compare_rows


def stored_entries(runs: list[list[dict]], storages: list[Storage]) -> list[Entry]:
    """Stored runs (and scored files) as a comparison's entries: ``runs[i]`` the summaries of
    one row (one run, or the seeds of one method), read from ``storages[i]``. Each row's runs
    must be on the same dataset and protocol as every other row of that dataset."""
    entries, protocol = [], {}
    for i, (summaries, storage) in enumerate(zip(runs, storages)):
        for s in summaries:
            ds = s["dataset"]
            if protocol.setdefault(ds, s["protocol"]) != s["protocol"]:
                raise ValueError(f"{s['name']}: a {ds} {s['protocol']} run beside {ds} "
                                 f"{protocol[ds]} runs; compare runs of one protocol")
            exp = ExperimentConfig.from_dict(s["config"]) if s.get("config") else None
            entries.append(Entry(ds, s.get("method") or "mer", bool(flags(s).get("leaky")),
                                 s.get("seed") or 0, exp, s["name"], len(summaries) > 1,
                                 summary=s, storage=storage, group=i,
                                 control=bool(flags(s).get("control"))))
    return entries


def stored_rows(runs: list[list[dict]], storages: list[Storage]) -> list[dict]:
    """``compare_rows`` over stored runs (see ``stored_entries``), bootstrap seeded by the
    first run's seed as a comparison's is."""
    entries = stored_entries(runs, storages)
    from .au_summary import holds_au_figures

    if holds_au_figures(entries[0].summary):
        from .au_compare import au_compare_rows
        from .compare import RESAMPLES, groups, parameters

        return au_compare_rows(groups(entries), entries[0].seed, RESAMPLES, parameters)
    return compare_rows(entries, entries[0].seed)
