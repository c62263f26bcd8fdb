"""The paper's model's fold: the network built from the driver's backbone source, checked
against the shared trunk tokens it reads, its inputs (clips or tokens, with the cached
augmented views), CE + KoLeo + consistency, trained by the platform's fold loop
(``fitting/loop.py``)."""

from __future__ import annotations

from ...fitting.job import FoldJob, FoldResult
from ...fitting.loop import FoldParts, fold_readers, set_determinism, train_fold
from ...fitting.task import class_weights
from ...model import MERLoss, MERNet
from ...model.build import TrunkMismatch, build_model, trunk_fingerprint
from ...provenance import libraries
from .inputs import FoldInputs
from .tokens import read_marker


def _read_columns(job: FoldJob, split: str) -> tuple[str, ...]:
    """What a split reads: the job's columns, plus the cached augmented views for training."""
    if split == "train" and job.tokens is not None and job.experiment.train.cached_views > 1:
        return (*job.columns, "views")
    return job.columns


def check_tokens(job: FoldJob, net: MERNet) -> None:
    """A fold reading shared trunk tokens must have built the trunk that made them, and the
    folder must hold the augmented views its configuration asks for."""
    if job.tokens is None:
        return
    own = trunk_fingerprint(net)
    if own != job.tokens.fingerprint:
        mine = {"weights": job.backbone.label, "pretrained": job.backbone.pretrained,
                "libraries": libraries()}
        raise TrunkMismatch(
            f"fold {job.key}: the shared trunk tokens in {job.tokens.root} were made by trunk "
            f"{job.tokens.fingerprint[:16]} ({dict(job.tokens.made_with)}); this fold built "
            f"{own[:16]} ({mine}). Are the backbone weights and library versions the same "
            f"everywhere?")
    marker = read_marker(job.tokens.root) or {}
    want = job.experiment.train.views_id
    if marker.get("fingerprint") != job.tokens.fingerprint or marker.get("views") != want:
        raise TrunkMismatch(
            f"fold {job.key}: {job.tokens.root} holds tokens of trunk "
            f"{str(marker.get('fingerprint'))[:16]} with views {marker.get('views')}; this fold "
            f"needs trunk {job.tokens.fingerprint[:16]} with views {want} "
            f"(train.cached_views and the augmentation settings decide them)")


def check_token_counts(job: FoldJob, readers: dict) -> None:
    """Each subject's tokens a fold read: as many clips as the pass that made them recorded
    (a partition that lost files reads fewer, silently)."""
    if job.tokens is None:
        return
    recorded = (read_marker(job.tokens.root) or {}).get("per_subject")
    if recorded is None:  # tokens made before passes counted their subjects' clips
        return
    for reader in readers.values():
        inner = getattr(reader, "inner", reader)
        for subject, n in getattr(inner, "per_subject", {}).items():
            if recorded.get(subject) != n:
                raise TrunkMismatch(
                    f"fold {job.key}: {job.tokens.root} subject={subject} holds {n} clip(s), "
                    f"its pass wrote {recorded.get(subject)}; delete the token folder to have "
                    f"it made again")


def mer_parts(job: FoldJob, device, token_cache: dict | None = None,
              readers: dict | None = None) -> FoldParts:
    """The paper's model (``MERNet``) for a fold: built from the driver's backbone source,
    checked against the shared tokens it reads, with its inputs and CE + KoLeo + consistency."""
    exp = job.experiment
    net = build_model(exp, len(job.class_names), job.backbone)
    check_tokens(job, net)
    net.to(device)
    loss_fn = MERLoss(exp.loss, class_weights(job, device)).to(device)
    readers = fold_readers(job, _read_columns) if readers is None else readers
    check_token_counts(job, readers)
    data = FoldInputs(net, exp, readers, device, job.label_override, token_cache)
    tc = exp.train
    return FoldParts(net, data, loss_fn, cache_trunk=tc.cache_trunk,
                     augmented=tc.augment and (not tc.cache_trunk or tc.cached_views > 1),
                     check_readers=lambda readers: check_token_counts(job, readers))


def fit_fold(job: FoldJob, device, resume: dict | None = None, on_epoch=None,
             token_cache: dict | None = None, readers: dict | None = None,
             every_epoch=None) -> FoldResult:
    """Train one fold of the paper's model and, if its job has a test split, predict it.
    ``token_cache``: clip -> trunk tokens, shared by folds of one process. ``readers``: split
    name -> reader (default: the job's sources, read now). The rest as ``train_fold``."""
    set_determinism(job.experiment.train.deterministic)
    return train_fold(job, device, mer_parts(job, device, token_cache, readers), resume,
                      on_epoch, every_epoch)
