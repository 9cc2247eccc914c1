"""Data sets and the paper's data protocol.

Sources, one module each: the embedded default (:mod:`.digits`, scikit-learn's handwritten
digits, no download); CIFAR-10 / CIFAR-100 archives (:mod:`.cifar`); ``.npz`` arrays and image
folders (:mod:`.files`); Tiny ImageNet (:mod:`.tinyimagenet`); Lacuna (:mod:`.lacuna`). The
containers (:mod:`.arrays`), the paper's split (:mod:`.splits`) and forget cohorts
(:mod:`.cohorts`) are shared by all of them.
"""

from ..inputs import as_tensors
from .arrays import (
    ArrayData,
    DataError,
    Split,
    class_arrays,
    class_subset,
    images_to_tensor,
    normalize,
)
from .cifar import CIFAR_ARCHIVES, load_cifar, safe_unpickle
from .cohorts import parse_index_file, read_cohort, read_index_file, retain_mask, select_forget
from .digits import digits_pretrain, digits_split, load_digits_arrays
from .files import (
    IMAGE_SUFFIXES,
    NPZ_PRESETS,
    load_image_folder,
    load_npz,
    load_npz_arrays,
    resolve_data_file,
)
from .lacuna import lacuna
from .splits import small_split
from .tinyimagenet import (
    FINETUNE_CLASSES as TINY_FINETUNE_CLASSES,
)
from .tinyimagenet import (
    PRETRAIN_CLASSES as TINY_PRETRAIN_CLASSES,
)
from .tinyimagenet import (
    load_tiny_imagenet,
    load_tinyimagenet_npz,
)

__all__ = [
    "ArrayData",
    "CIFAR_ARCHIVES",
    "DataError",
    "IMAGE_SUFFIXES",
    "NPZ_PRESETS",
    "Split",
    "TINY_FINETUNE_CLASSES",
    "TINY_PRETRAIN_CLASSES",
    "as_tensors",
    "class_arrays",
    "class_subset",
    "digits_pretrain",
    "digits_split",
    "images_to_tensor",
    "lacuna",
    "load_cifar",
    "load_digits_arrays",
    "load_image_folder",
    "load_npz",
    "load_npz_arrays",
    "load_tiny_imagenet",
    "load_tinyimagenet_npz",
    "normalize",
    "parse_index_file",
    "read_cohort",
    "read_index_file",
    "resolve_data_file",
    "retain_mask",
    "safe_unpickle",
    "select_forget",
    "small_split",
]
