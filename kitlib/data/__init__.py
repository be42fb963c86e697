"""Data: manifests -> ImageArrays -> protocol splits -> TorchImageSet -> DataLoader."""
from . import splits
from .core import ImageArrays
from .sources import DatasetError
from .splits import carve_val, check_split, kfold, long_tail, official, ratio_split
from .synthetic import make_synthetic
from .torchset import TorchImageSet, make_loader
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform, denormalize
from .catalog import load, load_path, list_datasets, dataset_status, fetch, get_manifest, format_status_table  # noqa: E402

__all__ = [
    "ImageArrays", "DatasetError", "make_synthetic", "splits", "kfold", "ratio_split", "carve_val", "long_tail", "official",
    "check_split", "build_transform", "denormalize", "IMAGENET_MEAN", "IMAGENET_STD", "TorchImageSet",
    "make_loader", "load", "load_path", "list_datasets", "dataset_status", "fetch", "get_manifest", "format_status_table",
]
