"""Dataset catalog: manifests by name, where each dataset lives, whether it is there, and load().

Data root: ``root=`` if given, else ``$KITLIB_DATA``, else the existing ones of ``<repo>/data`` and
``<repo>/../shared/data`` (repo = the folder holding the ``kitlib`` package; for a non-editable install,
the working directory), searched in that order for each dataset's folder. Status strings: ``present``, ``missing`` (the detail says what to download
and where to put it), ``checksum mismatch`` (the detail names the file, expected and found), and in the
status table ``invalid manifest`` (the detail is the ManifestError naming file and field).

Manifests: the built-in ones ship inside the package (``kitlib/data/manifests``; the repository's
``data_manifests/`` points there), plus private ones in the folder(s) of ``$KITLIB_MANIFESTS``
(``os.pathsep``-separated), whose provenance fields are optional (see :mod:`kitlib.data.manifest`).

``load`` also takes the path of your own data instead of a name (see :func:`load_path`).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from .core import ImageArrays
from .manifest import LOADER_OPTIONS, Layout, Manifest, ManifestError, read_manifest
from .sources import (
    IMAGE_EXTENSIONS,
    LOADERS,
    ChecksumError,
    DatasetError,
    DatasetMissingError,
    file_digest,
    load_image_folder,
    load_npz_file,
    load_path_csv,
)

_CHECKOUT = Path(__file__).resolve().parents[2]
# the repository holding the package; for a non-editable install (no pyproject.toml there) the working directory
REPO = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else Path.cwd()
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"  # package data (shipped in the wheel)
PRESENT, MISSING, MISMATCH, INVALID = "present", "missing", "checksum mismatch", "invalid manifest"
_COMMON_KW = ("size", "root", "copy", "ids", "masks", "cache", "progress", "verify", "classes")


class UnknownDatasetError(DatasetError, LookupError):
    """No manifest of that name (the message lists the known ones)."""


# ---------------------------------------------------------------------------------------------
# manifests


def user_manifest_dirs() -> list[Path]:
    """The private manifest folders of $KITLIB_MANIFESTS (os.pathsep-separated), in order."""
    return [Path(p).expanduser() for p in os.environ.get("KITLIB_MANIFESTS", "").split(os.pathsep) if p]


def _manifest_paths(manifest_dir=None) -> dict[str, tuple[Path, bool]]:
    """name -> (yaml path, private). manifest_dir given: only that folder (not private)."""
    if manifest_dir is not None:
        return {p.stem: (p, False) for p in sorted(Path(manifest_dir).glob("*.yaml"))}
    out = {p.stem: (p, False) for p in sorted(MANIFEST_DIR.glob("*.yaml"))}
    for d in user_manifest_dirs():
        for p in sorted(d.glob("*.yaml")):
            out.setdefault(p.stem, (p, True))  # a clash with a built-in name is reported by get_manifest
    return out


def dataset_names(manifest_dir=None) -> list[str]:
    """Names of all manifests (file stems of the built-in and the $KITLIB_MANIFESTS *.yaml), sorted."""
    return sorted(_manifest_paths(manifest_dir))


def get_manifest(name: str, manifest_dir=None) -> Manifest:
    """The validated manifest of `name` (ManifestError names file+field; unknown names list the known).

    A private manifest named like a built-in one is a ManifestError naming both files."""
    paths = _manifest_paths(manifest_dir)
    if name not in paths:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(paths))}"
        )
    path, private = paths[name]
    if manifest_dir is None and not private:
        clash = [d / f"{name}.yaml" for d in user_manifest_dirs() if (d / f"{name}.yaml").exists()]
        if clash:
            raise ManifestError(f"{clash[0]}: field 'name': {name!r} is a built-in dataset ({path}); "
                                "rename the file (and its name field)")
    return read_manifest(path, private=private)


def list_datasets(manifest_dir=None) -> list[Manifest]:
    """Every manifest, validated, sorted by name (the first invalid one raises ManifestError)."""
    return [get_manifest(n, manifest_dir) for n in dataset_names(manifest_dir)]


# ---------------------------------------------------------------------------------------------
# where the data lives


def data_roots(root=None) -> list[Path]:
    """Roots searched for dataset folders, in order (see module docstring)."""
    if root is not None:
        return [Path(root)]
    env = os.environ.get("KITLIB_DATA")
    if env:
        return [Path(env)]
    return [p for p in (REPO / "data", REPO.parent / "shared" / "data") if p.is_dir()]


def data_root(root=None) -> Path:
    """The data root: root, else $KITLIB_DATA, else the first existing of <repo>/data, <repo>/../shared/data
    (<repo>/data when neither exists)."""
    roots = data_roots(root)
    return roots[0] if roots else REPO / "data"


def _writable_root(root=None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("KITLIB_DATA")
    return Path(env) if env else REPO / "data"


def _find_folder(layout: Layout, root) -> Path | None:
    if Path(layout.folder).expanduser().is_absolute():  # private manifests may name their folder directly
        p = Path(layout.folder).expanduser()
        return p if p.is_dir() else None
    for r in data_roots(root):
        if (r / layout.folder).is_dir():
            return r / layout.folder
    return None


def _verify_list(folder: Path, listing: str) -> str | None:
    """Check every 'md5  path' line of an md5sum listing; a message about the first problem, or None."""
    path = folder / listing
    if not path.exists():
        return f"{path}: checksum listing not found"
    n_bad = 0
    first = None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        want, rel = line.split(maxsplit=1)
        p = folder / rel.strip().lstrip("*")
        if not p.exists():
            msg = f"{p}: listed in {listing} but not found"
        else:
            got = _md5_plain(p)
            msg = None if got == want else f"{p}: md5 expected {want}, found {got}"
        if msg:
            n_bad += 1
            first = first or msg
    return None if first is None else f"{first} ({n_bad} problem file(s) in {listing})"


def _md5_plain(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def _layout_status(layout: Layout, root, verify: bool) -> tuple[str, str, Path | None]:
    folder = _find_folder(layout, root)
    if folder is None:
        if Path(layout.folder).expanduser().is_absolute():
            return MISSING, f"no folder {layout.folder}", None
        roots = ", ".join(str(r) for r in data_roots(root)) or "(no data root exists yet)"
        return MISSING, f"no folder '{layout.folder}' under {roots}", None
    missing = [f.path for f in layout.files if f.required and not (folder / f.path).exists()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return MISSING, f"{folder}: missing {', '.join(missing[:3])}{more}", folder
    for f in layout.files:
        p = folder / f.path
        if f.checksum and p.exists() and (f.key or verify):
            algo, want = f.checksum
            got = file_digest(p, algo, memo=not verify)  # --verify always re-hashes
            if got != want:
                return MISMATCH, f"{p}: {algo} expected {want}, found {got}", folder
    if verify and layout.checksum_list:
        problem = _verify_list(folder, layout.checksum_list)
        if problem:
            return MISMATCH, problem, folder
    return PRESENT, str(folder), folder


def _missing_detail(m: Manifest, first_reason: str, root) -> str:
    lines = [f"{m.name} ({m.title}) is missing: {first_reason}."]
    if m.kind == "medmnist_npz":
        lines.append(f"It can be downloaded: `python -m kitlib fetch {m.name}` (or kitlib.data.fetch('{m.name}')).")
    lines.append(f"Put it in {_writable_root(root) / m.folder} (or set KITLIB_DATA to a folder holding '{m.folder}/'):")
    lines.append(m.obtain.strip())
    for c in m.copies:
        lines.append(f"Alternatively, copy '{c.id}' ({c.description}) in {_writable_root(root) / c.folder}:")
        lines.append(c.obtain.strip())
    return "\n".join(lines)


def _resolve(m: Manifest, root, verify: bool, copy: str | None = None):
    """(status, detail, layout, folder) of the first present layout (canonical first)."""
    layouts = m.layouts()
    if copy is not None:
        layouts = [lay for lay in layouts if lay.id == copy]
        if not layouts:
            raise DatasetError(f"{m.name}: no copy {copy!r}; copies: {[lay.id for lay in m.layouts()]}")
    results = [(lay, *_layout_status(lay, root, verify)) for lay in layouts]
    for lay, st, detail, folder in results:
        if st == PRESENT:
            note = "" if lay.id == "canonical" else f" [copy '{lay.id}': {lay.description}]"
            return PRESENT, detail + note, lay, folder
    for lay, st, detail, folder in results:
        if st == MISMATCH:
            return MISMATCH, detail, lay, folder
    return MISSING, _missing_detail(m, results[0][2], root), None, None


def dataset_status(name: str, root=None, verify: bool = False) -> tuple[str, str]:
    """(status, detail): 'present' (detail = folder), 'missing' (what to download, where to put it)
    or 'checksum mismatch' (file, expected, found). Only the manifest's key files are hashed unless
    verify=True, which also hashes every listed file and the layout's checksum listing."""
    m = get_manifest(name)
    if m.kind == "synthetic":
        return PRESENT, "generated in memory by kitlib.data.synthetic.make_synthetic (no files)"
    st, detail, _, _ = _resolve(m, root, verify)
    return st, detail


# ---------------------------------------------------------------------------------------------
# loading


def _medmnist_md5(layout: Layout, flag: str) -> dict[int, str]:
    out = {}
    for f in layout.files:
        stem = Path(f.path).name
        if stem == f"{flag}.npz" and f.md5:
            out[28] = f.md5
        elif stem.startswith(f"{flag}_") and stem.endswith(".npz") and f.md5:
            out[int(stem[len(flag) + 1 : -4])] = f.md5
    return out


def load(name: str, size: int | None = None, root=None, *, copy: str | None = None, ids=None,
         masks: bool = True, cache: bool = True, progress: bool = True, verify: bool = False,
         classes=None, **kw) -> ImageArrays:
    """Load a dataset by manifest name as :class:`ImageArrays`.

    size: output side in pixels (images resized to size x size); None = native (all images must share
    a size). root: data root (default: see module docstring). copy: force one layout ('canonical' or a
    copy id). ids: load only these image ids (in file order). masks: read lesion masks when the dataset
    has them. cache: use the decoded-array cache. classes: override the manifest's class list (e.g. a
    different X-ray9 selection). Other keyword arguments override the manifest's loader options.
    ``load('synthetic', size=..., **kw)`` calls ``kitlib.data.synthetic.make_synthetic(size=..., **kw)``.

    name may also be the path of your own data (a Path, or a string holding '/' or ending in .csv/.npz,
    or a name that is no manifest but an existing file or folder): see :func:`load_path`. A path that does
    not exist is a DatasetMissingError naming it; an unknown plain name is an UnknownDatasetError.
    """
    if _looks_like_path(name):
        return load_path(name, size, ids=ids, masks=masks, cache=cache, progress=progress, verify=verify,
                         classes=classes, **kw)
    try:
        m = get_manifest(name)
    except UnknownDatasetError as e:
        if Path(name).expanduser().exists():
            return load_path(name, size, ids=ids, masks=masks, cache=cache, progress=progress, verify=verify,
                             classes=classes, **kw)
        raise UnknownDatasetError(f"{e} (nor is {name!r} an existing file or folder)") from None
    if m.kind == "synthetic":
        from .synthetic import make_synthetic  # owned by the synthetic-data module; imported lazily

        opts = {k: v for k, v in m.loader.items() if k != "kind"}
        opts.update(kw)
        if size is not None:
            opts["size"] = size
        return make_synthetic(**opts)

    st, detail, layout, folder = _resolve(m, root, verify, copy)
    if st == MISMATCH:
        raise ChecksumError(f"{m.name}: checksum mismatch: {detail}; re-download that file")
    if st == MISSING:
        raise DatasetMissingError(detail)
    kind = layout.loader["kind"]
    unknown = sorted(set(kw) - set(LOADER_OPTIONS[kind]))
    if unknown:
        raise TypeError(
            f"load({name!r}): unknown option(s) {unknown}; loader '{kind}' accepts "
            f"{sorted(LOADER_OPTIONS[kind])} plus {list(_COMMON_KW)}"
        )
    opts = {k: v for k, v in layout.loader.items() if k != "kind"}
    opts.update(kw)
    class_names = list(classes) if classes is not None else (list(m.classes) if m.classes else None)
    loader = LOADERS[kind]
    extra = {}
    if kind == "medmnist_npz":
        extra["expected_md5"] = _medmnist_md5(layout, opts["flag"])
    if "num_classes" in inspect.signature(loader).parameters:
        extra["num_classes"] = len(class_names) if class_names else m.num_classes
    try:
        arr = loader(folder, name=m.name, class_names=class_names, size=size, ids=ids, masks=masks,
                     cache=cache, progress=progress, verify=verify, **opts, **extra)
    except DatasetMissingError as e:
        raise DatasetMissingError(f"{e}\nHow to obtain '{m.name}':\n{layout.obtain.strip()}") from None
    arr.meta.update(manifest=m.name, layout=layout.id, layout_folder=str(folder))
    return arr


USER_KINDS = ("folder of class sub-folders", "CSV of path,label rows", "MedMNIST-style .npz")


def _looks_like_path(name) -> bool:
    if isinstance(name, os.PathLike):
        return True
    s = str(name)
    return "/" in s or os.sep in s or s.startswith("~") or Path(s).suffix.lower() in (".csv", ".npz")


def load_path(path, size: int | None = None, *, ids=None, masks: bool = True, cache: bool = True,
              progress: bool = True, verify: bool = False, classes=None, **kw) -> ImageArrays:
    """Load your own data from a path as :class:`ImageArrays` (name = the folder / file stem).

    - a folder: one sub-folder per class (class = the sub-folder name; images may sit in nested folders
      below it); every file with a common image suffix (IMAGE_EXTENSIONS, case insensitive) is an
      image, hidden files and folders are skipped; classes sorted by name.
    - a ``.csv``: header ``path,label`` (optional ``group``, ``split`` columns), relative paths from
      the CSV's folder; classes sorted (numerically when all labels are integers).
    - a ``.npz``: MedMNIST keys ``{train,val,test}_{images,labels}`` (at least one split), class k = label k.

    size: resize to size x size (None: native, all images must share a size). classes: class names in
    label order (for a folder or CSV: which names, in which order; every label must be one of them).
    Decoded images are cached like a manifest's (keyed by every source file). A missing path is a
    DatasetMissingError naming it.
    """
    if kw:
        raise TypeError(f"load({str(path)!r}): unknown option(s) {sorted(kw)} for your own data; accepted: "
                        "size, ids, masks, cache, progress, verify, classes")
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetMissingError(
            f"{path}: no such file or folder. load() takes a manifest name (python -m kitlib datasets) or the "
            f"path of your own data: a {', a '.join(USER_KINDS)}"
        )
    name = p.resolve().stem if p.is_file() else p.resolve().name
    common = dict(name=name, class_names=list(classes) if classes is not None else None, size=size, ids=ids,
                  cache=cache, progress=progress, verify=verify)
    if p.is_dir():
        arr = load_image_folder(p, image_pattern="**/*", label_from="top_dir", extensions=IMAGE_EXTENSIONS,
                                masks=masks, **common)
    elif p.suffix.lower() == ".csv":
        arr = load_path_csv(p, masks=masks, **common)
    elif p.suffix.lower() == ".npz":
        arr = load_npz_file(p, **common)
    else:
        raise DatasetError(f"{p}: not a folder, .csv or .npz; load() reads your own data as a {', a '.join(USER_KINDS)}")
    arr.meta.update(source=str(p), user_data=True)
    return arr


# ---------------------------------------------------------------------------------------------
# fetching


def fetch(name: str, root=None, sizes=(28,)) -> tuple[str, str]:
    """Download what can be downloaded; return dataset_status afterwards.

    MedMNIST sets: the npz files of `sizes` are fetched with the medmnist package into
    ``<root>/<folder>`` (root default: $KITLIB_DATA, else <repo>/data). Every other dataset needs
    manual steps (registration / licence acceptance): if it is missing, DatasetMissingError gives them.
    """
    m = get_manifest(name)
    if m.kind == "synthetic":
        return dataset_status(name, root)
    st, detail = dataset_status(name, root)
    if m.kind != "medmnist_npz":
        if st == MISSING:
            raise DatasetMissingError(f"'{name}' cannot be downloaded automatically.\n{detail}")
        return st, detail
    import medmnist

    flag = m.loader["flag"]
    info = medmnist.INFO[flag]
    found = _find_folder(m.layouts()[0], root)
    for s in sizes:
        fname = f"{flag}.npz" if s == 28 else f"{flag}_{s}.npz"
        if found is not None and (found / fname).exists():
            continue
        folder = _writable_root(root) / m.folder
        created = [p for p in (folder.parent, folder) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        cls = getattr(medmnist, info["python_class"])
        try:
            cls(split="test", root=str(folder), size=s, download=True, mmap_mode="r")
        except Exception as e:
            for p in reversed(created):  # leave no empty folders behind a failed download
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
            sfx = "" if s == 28 else f"_{s}"
            first_line = (str(e).strip().splitlines() or [""])[0]
            raise DatasetMissingError(
                f"download of {fname} failed ({type(e).__name__}: {first_line}). "
                f"Manual step: download {info['url' + sfx]} (md5 {info['MD5' + sfx]}) and save it as {folder / fname}"
            ) from e
    return dataset_status(name, root)


# ---------------------------------------------------------------------------------------------
# status table (used by `python -m kitlib datasets`)


def status_rows(root=None, verify: bool = False) -> list[dict]:
    """One dict per dataset: name, title, status, papers, stands_in_for, task, classes, kind,
    where (folder found, or where to put it and how), detail (as dataset_status). A manifest that does not
    validate gives a row with status 'invalid manifest' and the ManifestError as where/detail."""
    rows = []
    for n in dataset_names():
        try:
            m = get_manifest(n)
        except ManifestError as e:  # one broken manifest is one error row, the others are still listed
            rows.append(dict(name=n, title="", status=INVALID, papers="", stands_in_for="", task="-", classes="-",
                             kind="-", where=f"fix the manifest: {e}", detail=str(e)))
            continue
        if m.kind == "synthetic":
            st, detail, where = PRESENT, "generated in memory", "(in memory)"
        else:
            st, detail, layout, folder = _resolve(m, root, verify)
            if st == PRESENT:
                where = str(folder) + ("" if layout.id == "canonical" else f"  (copy '{layout.id}')")
            elif st == MISMATCH:
                where = detail
            else:
                how = (f"python -m kitlib fetch {m.name}" if m.kind == "medmnist_npz"
                       else "manual: see its manifest 'obtain'")
                where = f"put in {_writable_root(root) / m.folder}  ({how})"
        rows.append(dict(name=m.name, title=m.title, status=st, papers=",".join(m.papers),
                         stands_in_for=",".join(m.stands_in_for), task=m.task, classes=m.num_classes,
                         kind=m.kind, where=where, detail=detail))
    return rows


def format_status_table(root=None, verify: bool = False, rows: list[dict] | None = None) -> str:
    """A plain-text table: dataset, status, papers (or 'for <dataset>' for stand-ins), task, #classes,
    location or what to do; last line: how many are present (and how many manifests are invalid) and the
    data roots searched. rows: status_rows() already computed (not hashed again)."""
    rows = status_rows(root, verify) if rows is None else rows
    head = ["dataset", "status", "papers", "task", "C", "location / what to do"]
    body = [[r["name"], r["status"],
             r["papers"] or (f"for {r['stands_in_for']}" if r["stands_in_for"] else "-"),
             r["task"], str(r["classes"]), r["where"]] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]

    def fmt(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]

    lines = [fmt(head), fmt(["-" * w for w in widths] + ["-" * len(head[-1])])]
    lines += [fmt(b) for b in body]
    n_present = sum(r["status"] == PRESENT for r in rows)
    n_invalid = sum(r["status"] == INVALID for r in rows)
    roots = ", ".join(str(r) for r in data_roots(root)) or f"(none yet; default {_writable_root(root)})"
    bad = f"; {n_invalid} invalid manifest(s)" if n_invalid else ""
    lines.append(f"{n_present} of {len(rows)} datasets present{bad}; data roots searched: {roots}")
    return "\n".join(lines)
