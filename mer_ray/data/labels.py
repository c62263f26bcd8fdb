"""Label maps for every dataset and protocol, in one place.

A protocol maps a dataset's own emotion words (lower-cased) to class names, and fixes the class
order, which defines ``label_id``. Emotions not in the map are outside the protocol: the manifest
keeps their rows with ``excluded_reason = "label outside protocol"``.

Counts these maps yield on the published annotation files are listed in docs/datasets.md and checked by
``tests/test_labels.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .aus import CD6ME_AUS

THREE_CLASSES = ("negative", "positive", "surprise")


@dataclass(frozen=True)
class Protocol:
    dataset: str
    name: str
    classes: tuple[str, ...]
    emotion_to_class: dict[str, str]
    # MEGC 2019's composite was built from clips with an annotated apex: CASME II rows whose apex
    # is "/" or "-1" are not part of its 3-class set (145 clips, negative 88), while the 5-class
    # protocol keeps them (246 clips). SMIC has no apex at all and is never held to this.
    requires_apex: bool = False
    # A multi-label protocol (CD6ME): the "classes" are action units, a clip's label is the set
    # of them its AU cell names (``label_id``: a bit mask, bit i for ``classes[i]``), whatever
    # its emotion; every AU-coded clip is in.
    multilabel: bool = False

    def label_of(self, emotion: str | None) -> str | None:
        """Class name for a dataset emotion word, or None when the protocol leaves it out."""
        if emotion is None:
            return None
        return self.emotion_to_class.get(normalise_emotion(emotion))

    def label_id(self, label: str) -> int:
        return self.classes.index(label)


def normalise_emotion(emotion: str) -> str:
    return " ".join(str(emotion).strip().lower().split())


def _identity(*names: str) -> dict[str, str]:
    return {n: n for n in names}


# SAMM uses capitalised single words ("Anger", "Other"); CASME II uses "others" and "repression".
# The 3-class maps follow MEGC 2019.
PROTOCOLS: dict[tuple[str, str], Protocol] = {
    ("casme2", "5class"): Protocol(
        "casme2", "5class",
        ("happiness", "disgust", "repression", "surprise", "others"),
        _identity("happiness", "disgust", "repression", "surprise", "others"),
    ),
    ("casme2", "3class"): Protocol(
        "casme2", "3class", THREE_CLASSES,
        {"happiness": "positive", "disgust": "negative", "repression": "negative",
         "surprise": "surprise"},
        requires_apex=True,
    ),
    ("samm", "5class"): Protocol(
        "samm", "5class",
        ("anger", "contempt", "happiness", "surprise", "other"),
        _identity("anger", "contempt", "happiness", "surprise", "other"),
    ),
    ("samm", "3class"): Protocol(
        "samm", "3class", THREE_CLASSES,
        {"happiness": "positive", "surprise": "surprise", "anger": "negative",
         "contempt": "negative", "disgust": "negative", "fear": "negative",
         "sadness": "negative"},
        requires_apex=True,
    ),
    # SMIC's emotion is the folder name, already one of the three classes.
    ("smic", "3class"): Protocol("smic", "3class", THREE_CLASSES, _identity(*THREE_CLASSES)),
    # CAS(ME)^3 part A writes "happy" and "sad"; "Others" (3 rows) is lower-cased to "others".
    ("casme3", "7class"): Protocol(
        "casme3", "7class",
        ("anger", "disgust", "fear", "happy", "sad", "surprise", "others"),
        _identity("anger", "disgust", "fear", "happy", "sad", "surprise", "others"),
    ),
    ("casme3", "4class"): Protocol(
        "casme3", "4class", (*THREE_CLASSES, "others"),
        {"anger": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
         "happy": "positive", "surprise": "surprise", "others": "others"},
    ),
    ("casme3", "3class"): Protocol(
        "casme3", "3class", THREE_CLASSES,
        {"anger": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
         "happy": "positive", "surprise": "surprise"},
    ),
    # CASME (I): the MEGC-style grouping; repression and tense are outside it.
    ("casme", "3class"): Protocol(
        "casme", "3class", THREE_CLASSES,
        {"happiness": "positive", "surprise": "surprise", "disgust": "negative",
         "fear": "negative", "contempt": "negative", "sadness": "negative"},
    ),
    # MMEW: its seven emotions, "others" read as "repression" as MEB maps it.
    ("mmew", "7class"): Protocol(
        "mmew", "7class",
        ("happiness", "surprise", "disgust", "fear", "sadness", "anger", "repression"),
        {**_identity("happiness", "surprise", "disgust", "fear", "sadness", "anger",
                     "repression"), "others": "repression"},
    ),
    ("mmew", "3class"): Protocol(
        "mmew", "3class", THREE_CLASSES,
        {"happiness": "positive", "surprise": "surprise", "disgust": "negative",
         "fear": "negative", "sadness": "negative", "anger": "negative"},
    ),
    # 4DME: its five emotion classes; a row naming several is outside every protocol.
    ("4dme", "5class"): Protocol(
        "4dme", "5class", ("positive", "negative", "surprise", "repression", "others"),
        _identity("positive", "negative", "surprise", "repression", "others"),
    ),
    ("4dme", "3class"): Protocol("4dme", "3class", THREE_CLASSES, _identity(*THREE_CLASSES)),
    # The cross-dataset AU protocol over six datasets (adapters/cd6me.py): 12 action units.
    ("cd6me", "cd6me"): Protocol("cd6me", "cd6me", tuple(f"AU{a}" for a in CD6ME_AUS), {},
                                 multilabel=True),
}


def protocols_of(dataset: str) -> tuple[str, ...]:
    """The protocol names a dataset offers (the MEGC composite: 3class only)."""
    if dataset == "megc":
        return ("3class",)
    return tuple(p for d, p in PROTOCOLS if d == dataset)


def is_multilabel(protocol_name: str | None) -> bool:
    """Whether a protocol's labels are sets of action units (CD6ME) rather than one class."""
    return any(p.multilabel for (_, name), p in PROTOCOLS.items() if name == protocol_name)


def label_names(protocol_name: str, names, ids) -> list[str]:
    """Each clip's label as text (fold files): its class name, or under a multi-label protocol
    its AU set ("AU4+AU10", "none")."""
    if is_multilabel(protocol_name):
        from .aus import mask_name

        return [mask_name(y, names) for y in ids]
    return [names[y] for y in ids]


ALL_PROTOCOLS = tuple(sorted({p for _, p in PROTOCOLS}))


def protocol(dataset: str, name: str) -> Protocol:
    """The protocol for ``dataset`` ("samm", "casme2", "smic", "casme3") and ``name``
    ("3class", "5class", ...)."""
    key = (dataset, name)
    if key not in PROTOCOLS:
        offered = ", ".join(p for d, p in PROTOCOLS if d == dataset) or "none"
        raise ValueError(
            f"dataset {dataset!r} has no protocol {name!r} (offered: {offered})"
        )
    return PROTOCOLS[key]


def class_names(dataset: str, name: str) -> tuple[str, ...]:
    """Class names in label-id order. The MEGC composite uses the shared 3-class order."""
    if dataset == "megc":
        if name != "3class":
            raise ValueError(f"dataset 'megc' has no protocol {name!r} (offered: 3class)")
        return THREE_CLASSES
    return protocol(dataset, name).classes
