"""Dataset catalog: manifests by name, where each dataset lives, whether it is there, and load().

Data root: ``root=`` if given, else ``$KITLIB_DATA``, else the existing ones of ``<repo>/data`` and
``<repo>/../shared/data`` (repo = the folder holding the ``kitlib`` package), searched in that order
for each dataset's folder. Status strings: ``present``, ``missing`` (the detail says what to download
and where to put it), ``checksum mismatch`` (the detail names the file, expected and found).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from .core import ImageArrays
from .manifest import LOADER_OPTIONS, Layout, Manifest, read_manifest
from .sources import (
    LOADERS,
    ChecksumError,
    DatasetError,
    DatasetMissingError,
    file_digest,
)

REPO = Path(__file__).resolve().parents[2]
MANIFEST_DIR = REPO / "data_manifests"
PRESENT, MISSING, MISMATCH = "present", "missing", "checksum mismatch"
_COMMON_KW = ("size", "root", "copy", "ids", "masks", "cache", "progress", "verify", "classes")


class UnknownDatasetError(DatasetError, LookupError):
    """No manifest of that name (the message lists the known ones)."""


# ---------------------------------------------------------------------------------------------
# manifests


def _manifest_dir(manifest_dir=None) -> Path:
    return Path(manifest_dir) if manifest_dir is not None else MANIFEST_DIR


def dataset_names(manifest_dir=None) -> list[str]:
    """Names of all manifests (file stems of data_manifests/*.yaml), sorted."""
    return sorted(p.stem for p in _manifest_dir(manifest_dir).glob("*.yaml"))


def get_manifest(name: str, manifest_dir=None) -> Manifest:
    """The validated manifest of `name` (ManifestError names file+field; unknown names list the known)."""
    path = _manifest_dir(manifest_dir) / f"{name}.yaml"
    if not path.exists():
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names(manifest_dir))}"
        )
    return read_manifest(path)


def list_datasets(manifest_dir=None) -> list[Manifest]:
    """Every manifest, validated, sorted by name."""
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
            got = file_digest(p, algo)
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
    """
    m = get_manifest(name)
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
                     cache=cache, progress=progress, **opts, **extra)
    except DatasetMissingError as e:
        raise DatasetMissingError(f"{e}\nHow to obtain '{m.name}':\n{layout.obtain.strip()}") from None
    arr.meta.update(manifest=m.name, layout=layout.id, layout_folder=str(folder))
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
    where (folder found, or where to put it and how), detail (as dataset_status)."""
    rows = []
    for m in list_datasets():
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


def format_status_table(root=None, verify: bool = False) -> str:
    """A plain-text table: dataset, status, papers (or 'for <dataset>' for stand-ins), task, #classes,
    location or what to do; last line: how many are present and the data roots searched."""
    rows = status_rows(root, verify)
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
    roots = ", ".join(str(r) for r in data_roots(root)) or f"(none yet; default {_writable_root(root)})"
    lines.append(f"{n_present} of {len(rows)} datasets present; data roots searched: {roots}")
    return "\n".join(lines)
