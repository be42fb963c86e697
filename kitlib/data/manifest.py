"""Dataset manifests: one YAML file per dataset in ``data_manifests/``, validated when read.

A manifest says what a dataset is (classes, published counts, licence, citation), which of the five
papers use it and how (split protocol, preprocessing), how to obtain it (exact manual steps and the
folder layout under the data root), which files prove it is there (relative paths + md5/sha256),
and how to read it (``loader``: a kind from :mod:`kitlib.data.sources` plus that kind's options).

A dataset may exist in more than one physical form (e.g. Skin7 = the original 600x450 HAM10000
archive, or a resized 200x150 copy): the top-level ``folder/files/loader/obtain`` describe the
canonical form, ``copies`` list the alternatives, each with its own checksums.

A *private* manifest (one in the user manifest folder ``$KITLIB_MANIFESTS``, read with
``private=True``) needs only ``classes``, ``folder`` and ``loader``: every provenance field (name, title,
task, modality, counts, source, obtain, licence, citation, files, split_protocol, preprocessing, papers)
is optional and filled with neutral defaults (see :data:`PRIVATE_DEFAULTS`); ``folder`` may be absolute.

Every problem is reported as :class:`ManifestError` naming the file and the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The five papers this kit reproduces (ids are the file-name prefixes in shared/papers/).
PAPERS = {
    "000": "Chen et al. MICCAI 2021, perturbed input during inference",
    "001": "Galdran et al. MICCAI 2021, Balanced-MixUp",
    "002": "Marrakchi et al. MICCAI 2021, contrastive learning",
    "003": "Zhuang et al. Neurocomputing 2023, CARE",
    "004": "Zeng et al., metric learning two-stage",
}
TASKS = ("multiclass", "ordinal", "binary", "segmentation")
SPLIT_KINDS = ("official", "kfold", "ratio", "long_tail", "external_test", "none")

# Loader kinds and the options each accepts: option -> (type(s), required).
_STR, _INT, _BOOL, _DICT, _LIST = str, int, bool, dict, list
LOADER_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "medmnist_npz": {"flag": ((_STR,), True), "sizes": ((_LIST,), False)},
    "image_csv": {
        "csv": ((_STR,), False),
        "tables": ((_LIST,), False),
        "id_column": ((_STR,), True),
        "label_column": ((_STR,), True),
        "image_pattern": ((_STR,), False),
        "group_column": ((_STR,), False),
        "split_column": ((_STR,), False),
        "mask_pattern": ((_STR,), False),
        "label_map": ((_DICT,), False),
        "where": ((_DICT,), False),
        "multi_label_sep": ((_STR,), False),
        "drop_unlisted": ((_BOOL,), False),
        "sep": ((_STR,), False),
    },
    "chestxray14": {
        "csv": ((_STR,), False),
        "image_pattern": ((_STR,), False),
        "id_column": ((_STR,), False),
        "label_column": ((_STR,), False),
        "group_column": ((_STR,), False),
    },
    "rsna_boxes": {
        "labels_csv": ((_STR,), False),
        "class_csv": ((_STR,), False),
        "image_pattern": ((_STR,), False),
        "class_counts": ((_DICT,), False),
        "subset_seed": ((_INT,), False),
    },
    "image_folder": {
        "image_pattern": ((_STR,), True),
        "label_from": ((_STR,), False),
        "label": ((_STR,), False),
        "extensions": ((_LIST,), False),
        "mask_pattern": ((_STR,), False),
        "split_lists": ((_DICT,), False),
    },
    "flowers102": {
        "image_pattern": ((_STR,), False),
        "labels_mat": ((_STR,), False),
        "setid_mat": ((_STR,), False),
    },
    # free keyword arguments of kitlib.data.synthetic.make_synthetic
    "synthetic": {
        "n": ((_INT,), False),
        "num_classes": ((_INT,), False),
        "ratio": ((int, float), False),
        "size": ((_INT,), False),
        "seed": ((_INT,), False),
        "overlap": ((int, float), False),
        "distractors": ((_BOOL,), False),
    },
}


class ManifestError(ValueError):
    """A manifest file is malformed: the message names the file and the field."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset, relative to its folder.

    key: hashed by every status check (small files only); others only with ``verify=True``.
    required: the dataset counts as missing without it.
    """

    path: str
    md5: str | None = None
    sha256: str | None = None
    key: bool = False
    required: bool = True
    note: str | None = None

    @property
    def checksum(self) -> tuple[str, str] | None:
        """('md5'|'sha256', hex) or None when unknown."""
        if self.md5:
            return "md5", self.md5
        if self.sha256:
            return "sha256", self.sha256
        return None


@dataclass(frozen=True)
class Layout:
    """One physical form of a dataset: where it lives under the data root and how to read it."""

    id: str
    description: str
    folder: str | None
    files: tuple[FileEntry, ...]
    files_note: str | None
    checksum_list: str | None
    loader: dict
    obtain: str


@dataclass(frozen=True)
class Manifest:
    """A validated dataset manifest (field meanings: see the module docstring and any file in data_manifests/)."""

    name: str
    title: str
    task: str
    modality: str
    classes: tuple[str, ...] | None  # None when names are only defined by the files (see class_names_from)
    num_classes: int
    class_names_from: str | None
    counts: tuple[dict, ...]
    source: dict
    obtain: str
    licence: str
    citation: str
    folder: str | None
    files: tuple[FileEntry, ...]
    files_note: str | None
    checksum_list: str | None
    split_protocol: tuple[dict, ...]
    preprocessing: tuple[dict, ...]
    papers: tuple[str, ...]
    loader: dict
    copies: tuple[Layout, ...] = ()
    stands_in_for: tuple[str, ...] = ()
    notes: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.loader["kind"]

    def layouts(self) -> list[Layout]:
        """The canonical layout first, then the alternative copies."""
        main = Layout(
            id="canonical",
            description=self.title,
            folder=self.folder,
            files=self.files,
            files_note=self.files_note,
            checksum_list=self.checksum_list,
            loader=self.loader,
            obtain=self.obtain,
        )
        return [main, *self.copies]


# ---------------------------------------------------------------------------------------------
# validation


class _Check:
    """Type checks that raise ManifestError naming the manifest file and the dotted field path."""

    def __init__(self, path: Path | str):
        self.path = str(path)

    def fail(self, field_name: str, msg: str):
        raise ManifestError(f"{self.path}: field '{field_name}': {msg}")

    def fields(self, where: str, data: Any, spec: dict[str, tuple[tuple[type, ...], bool]]) -> dict:
        """Check a mapping against spec {key: (types, required)}: unknown, missing, wrong-typed keys."""
        if not isinstance(data, dict):
            self.fail(where or "<top level>", f"must be a mapping, got {type(data).__name__}")
        prefix = f"{where}." if where else ""
        for key in data:
            if key not in spec:
                self.fail(f"{prefix}{key}", f"unknown field (known: {', '.join(sorted(spec))})")
        for key, (types, required) in spec.items():
            if key not in data or data[key] is None:
                if required and not (key in data and type(None) in types):
                    self.fail(f"{prefix}{key}", "missing (required)")
                continue
            value = data[key]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                want = " or ".join(t.__name__ for t in types if t is not type(None))
                self.fail(f"{prefix}{key}", f"must be {want}, got {type(value).__name__} ({value!r:.60})")
        return data

    def str_list(self, where: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, f"must be a list of strings, got {value!r:.80}")
        return value


_NONE = type(None)
_TOP = {
    "name": ((str,), True),
    "title": ((str,), True),
    "task": ((str,), True),
    "modality": ((str,), True),
    "classes": ((list, dict), True),
    "counts": ((list,), True),
    "source": ((dict,), True),
    "obtain": ((str,), True),
    "licence": ((str,), True),
    "citation": ((str,), True),
    "folder": ((str, _NONE), True),
    "files": ((list,), True),
    "files_note": ((str,), False),
    "checksum_list": ((str,), False),
    "split_protocol": ((list,), True),
    "preprocessing": ((list,), True),
    "papers": ((list,), True),
    "loader": ((dict,), True),
    "copies": ((list,), False),
    "stands_in_for": ((list,), False),
    "notes": ((str,), False),
}
_FILE = {
    "path": ((str,), True),
    "md5": ((str,), False),
    "sha256": ((str,), False),
    "key": ((bool,), False),
    "required": ((bool,), False),
    "note": ((str,), False),
}
_COUNT = {
    "split": ((str,), True),
    "values": ((dict,), False),
    "total": ((int,), False),
    "source": ((str,), True),
    "note": ((str,), False),
}
_SOURCE = {
    "homepage": ((str,), False),
    "download": ((str,), False),
    "medmnist_flag": ((str,), False),
    "note": ((str,), False),
}
_SPLIT = {
    "kind": ((str,), True),
    "papers": ((list,), True),
    "k": ((int,), False),
    "ratios": ((list,), False),
    "names": ((list,), False),
    "rho": ((int, float), False),
    "stratified": ((bool,), False),
    "grouped_by": ((str,), False),
    "repeats": ((int,), False),
    "note": ((str,), False),
}
_PREP = {"papers": ((list,), True), "train": ((str,), True), "test": ((str,), True), "note": ((str,), False)}
_CLASSES_FROM = {"count": ((int,), True), "names_from": ((str,), True)}
_COPY = {
    "id": ((str,), True),
    "description": ((str,), True),
    "folder": ((str,), True),
    "files": ((list,), True),
    "files_note": ((str,), False),
    "checksum_list": ((str,), False),
    "loader": ((dict,), True),
    "obtain": ((str,), True),
}


def _papers(c: _Check, where: str, value: Any) -> tuple[str, ...]:
    c.str_list(where, value)
    for p in value:
        if p not in PAPERS:
            c.fail(where, f"unknown paper {p!r} (known: {', '.join(PAPERS)})")
    return tuple(value)


def _files(c: _Check, where: str, entries: list, note: str | None) -> tuple[FileEntry, ...]:
    out = []
    for i, e in enumerate(entries):
        c.fields(f"{where}[{i}]", e, _FILE)
        if e.get("md5") is not None and (len(e["md5"]) != 32 or not _is_hex(e["md5"])):
            c.fail(f"{where}[{i}].md5", f"must be 32 hex digits, got {e['md5']!r}")
        if e.get("sha256") is not None and (len(e["sha256"]) != 64 or not _is_hex(e["sha256"])):
            c.fail(f"{where}[{i}].sha256", f"must be 64 hex digits, got {e['sha256']!r}")
        if Path(e["path"]).is_absolute() or ".." in Path(e["path"]).parts:
            c.fail(f"{where}[{i}].path", f"must be relative to the dataset folder, got {e['path']!r}")
        out.append(FileEntry(**{k: e[k] for k in e if e[k] is not None}))
    unknown = [f for f in out if f.checksum is None]
    if (not out or unknown) and not note:
        c.fail(
            where.replace("files", "files_note"),
            "missing: say why checksums are unknown when 'files' is empty or lists a file without md5/sha256",
        )
    return tuple(out)


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def _loader(c: _Check, where: str, spec: dict) -> dict:
    if not isinstance(spec, dict) or "kind" not in spec:
        c.fail(f"{where}.kind", "missing (required)")
    kind = spec["kind"]
    if kind not in LOADER_OPTIONS:
        c.fail(f"{where}.kind", f"unknown loader kind {kind!r} (known: {', '.join(LOADER_OPTIONS)})")
    c.fields(where, {k: v for k, v in spec.items() if k != "kind"}, LOADER_OPTIONS[kind])
    if kind == "image_csv" and not (("csv" in spec and "image_pattern" in spec) or "tables" in spec):
        c.fail(f"{where}.csv", "image_csv needs 'csv' + 'image_pattern', or 'tables'")
    if "tables" in spec:
        for i, t in enumerate(spec["tables"]):
            c.fields(
                f"{where}.tables[{i}]",
                t,
                {"csv": ((str,), True), "image_pattern": ((str,), True), "split": ((str,), False)},
            )
    if kind == "medmnist_npz" and "sizes" in spec:
        bad = [s for s in spec["sizes"] if s not in (28, 64, 128, 224)]
        if bad:
            c.fail(f"{where}.sizes", f"MedMNIST sizes are 28, 64, 128, 224; got {bad}")
    if kind == "image_folder" and spec.get("label_from", "parent_dir") not in ("parent_dir", "top_dir", "constant"):
        c.fail(f"{where}.label_from", f"must be 'parent_dir', 'top_dir' or 'constant', got {spec['label_from']!r}")
    if kind == "image_folder" and spec.get("label_from") == "constant" and "label" not in spec:
        c.fail(f"{where}.label", "required when label_from is 'constant'")
    return dict(spec)


# Provenance defaults of a private manifest ({name} = the file stem).
PRIVATE_DEFAULTS = {
    "title": "{name} (private data)",
    "task": "multiclass",
    "modality": "unspecified",
    "counts": [],
    "source": {"note": "private data"},
    "obtain": "private data: not downloadable; put the files in the manifest's folder",
    "licence": "private",
    "citation": "",
    "files": [],
    "files_note": "private data: no published checksums",
    "split_protocol": [],
    "preprocessing": [],
    "papers": [],
}


def validate_manifest(data: Any, path: Path | str, private: bool = False) -> Manifest:
    """Check a parsed YAML document and return a :class:`Manifest` (errors name file and field).

    private=True: the provenance fields may be left out (see :data:`PRIVATE_DEFAULTS`)."""
    c = _Check(path)
    stem = Path(path).stem
    if private and isinstance(data, dict):
        filled = {"name": stem, **{k: (v.format(name=stem) if isinstance(v, str) else v)
                                   for k, v in PRIVATE_DEFAULTS.items()}}
        data = {**filled, **{k: v for k, v in data.items() if v is not None or k == "folder"}}
    c.fields("", data, _TOP)
    if data["name"] != stem:
        c.fail("name", f"must equal the file name {stem!r}, got {data['name']!r}")
    if data["task"] not in TASKS:
        c.fail("task", f"must be one of {TASKS}, got {data['task']!r}")

    classes, names_from = data["classes"], None
    if isinstance(classes, dict):
        c.fields("classes", classes, _CLASSES_FROM)
        num_classes, names_from, classes = classes["count"], classes["names_from"], None
    else:
        c.str_list("classes", classes)
        if len(set(classes)) != len(classes):
            c.fail("classes", "contains duplicate names")
        num_classes, classes = len(classes), tuple(classes)
    if num_classes < 1:
        c.fail("classes", "needs at least one class")

    counts = []
    for i, e in enumerate(data["counts"]):
        c.fields(f"counts[{i}]", e, _COUNT)
        if "values" not in e and "total" not in e:
            c.fail(f"counts[{i}].values", "give 'values' (per class) or 'total'")
        for cls, n in (e.get("values") or {}).items():
            if classes is not None and cls not in classes:
                c.fail(f"counts[{i}].values", f"class {cls!r} is not in classes {list(classes)}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                c.fail(f"counts[{i}].values.{cls}", f"must be a non-negative int, got {n!r}")
        counts.append(dict(e))

    c.fields("source", data["source"], _SOURCE)
    if not data["source"]:
        c.fail("source", "give at least one of homepage / download / medmnist_flag")

    splits = []
    for i, e in enumerate(data["split_protocol"]):
        c.fields(f"split_protocol[{i}]", e, _SPLIT)
        if e["kind"] not in SPLIT_KINDS:
            c.fail(f"split_protocol[{i}].kind", f"must be one of {SPLIT_KINDS}, got {e['kind']!r}")
        _papers(c, f"split_protocol[{i}].papers", e["papers"])
        if e["kind"] == "kfold" and "k" not in e:
            c.fail(f"split_protocol[{i}].k", "required for kind kfold")
        if e["kind"] == "ratio" and "ratios" not in e:
            c.fail(f"split_protocol[{i}].ratios", "required for kind ratio")
        if e["kind"] == "long_tail" and "rho" not in e:
            c.fail(f"split_protocol[{i}].rho", "required for kind long_tail")
        splits.append(dict(e))

    preps = []
    for i, e in enumerate(data["preprocessing"]):
        c.fields(f"preprocessing[{i}]", e, _PREP)
        _papers(c, f"preprocessing[{i}].papers", e["papers"])
        preps.append(dict(e))

    papers = _papers(c, "papers", data["papers"])
    files = _files(c, "files", data["files"], data.get("files_note"))
    loader = _loader(c, "loader", data["loader"])
    if data["folder"] is None and loader["kind"] != "synthetic":
        c.fail("folder", "missing: only the synthetic loader has no folder")

    copies = []
    for i, e in enumerate(data.get("copies") or []):
        c.fields(f"copies[{i}]", e, _COPY)
        copies.append(
            Layout(
                id=e["id"],
                description=e["description"],
                folder=e["folder"],
                files=_files(c, f"copies[{i}].files", e["files"], e.get("files_note")),
                files_note=e.get("files_note"),
                checksum_list=e.get("checksum_list"),
                loader=_loader(c, f"copies[{i}].loader", e["loader"]),
                obtain=e["obtain"],
            )
        )
    stands_in_for = tuple(c.str_list("stands_in_for", data.get("stands_in_for") or []))

    return Manifest(
        name=data["name"],
        title=data["title"],
        task=data["task"],
        modality=data["modality"],
        classes=classes,
        num_classes=num_classes,
        class_names_from=names_from,
        counts=tuple(counts),
        source=dict(data["source"]),
        obtain=data["obtain"],
        licence=data["licence"],
        citation=data["citation"],
        folder=data["folder"],
        files=files,
        files_note=data.get("files_note"),
        checksum_list=data.get("checksum_list"),
        split_protocol=tuple(splits),
        preprocessing=tuple(preps),
        papers=papers,
        loader=loader,
        copies=tuple(copies),
        stands_in_for=stands_in_for,
        notes=data.get("notes"),
        path=Path(path),
    )


def read_manifest(path: Path | str, private: bool = False) -> Manifest:
    """Parse and validate one manifest YAML file (private: see :func:`validate_manifest`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest file not found") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from None
    return validate_manifest(data, path, private=private)
