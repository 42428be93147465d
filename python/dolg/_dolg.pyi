"""Type stubs of the Rust extension module (python/src). Docstrings: see the runtime objects."""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]
_Image = Union[_Path, npt.NDArray[np.uint8]]

__version__: str

class DolgError(Exception):
    """An error reported by the dolg library; the message names the file, key or value at fault."""

class Model:
    def __init__(
        self,
        weights: Optional[_Path] = None,
        backbone: Optional[str] = None,
        scales: Optional[Sequence[float]] = None,
        threads: Optional[int] = None,
        *,
        arch: Optional[str] = None,
        fusion: Optional[str] = None,
        max_size: int = 1024,
        ignore_orientation: bool = False,
        scale_combine: str = "mean",
        max_side: int = 20000,
        device: str = "cpu",
        cpu_kernels: Optional[str] = None,
    ) -> None: ...
    def describe(self, images: Union[_Image, Sequence[_Image], npt.NDArray[np.uint8]], *, bgr: bool = False) -> npt.NDArray[np.float32]:
        """float32 [N, D] descriptors of paths or uint8 [H, W, 3] arrays (RGB; BGR with bgr=True)."""
    def describe_files(
        self, paths: Sequence[_Path], *, on_error: str = "skip"
    ) -> Tuple[npt.NDArray[np.float32], List[str], List[Tuple[str, str]]]:
        """(descriptors [N, D], names, failures [(path, error)]) as `dolg extract` makes them."""
    @property
    def dim(self) -> int: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scales(self) -> List[float]: ...
    @property
    def spec(self) -> Dict[str, Any]: ...

class Collection:
    @staticmethod
    def create(path: _Path, model: Model, *, kind: str = "exact", root: Optional[_Path] = None) -> "Collection": ...
    @staticmethod
    def open_or_create(
        path: _Path, model: Model, *, kind: str = "exact", root: Optional[_Path] = None, paths: Optional[Sequence[_Path]] = None
    ) -> "Collection": ...
    @staticmethod
    def open(path: _Path, *, mode: str = "read", weights: Optional[_Path] = None, device: str = "cpu") -> "Collection": ...
    @staticmethod
    def create_for_vectors(path: _Path, dim: int) -> "Collection": ...
    def add(self, paths: Sequence[_Path], *, batch: int = 32) -> Dict[str, Any]: ...
    def sync(self, paths: Sequence[_Path], *, root: Optional[_Path] = None, batch: int = 32) -> Dict[str, Any]: ...
    def remove(self, names: Sequence[str]) -> int: ...
    def import_vectors(self, vectors: npt.NDArray[np.float32], names: Sequence[str], *, same_model: bool = False) -> None: ...
    def search(
        self,
        vectors: npt.NDArray[np.float32],
        k: int = 10,
        *,
        min_score: Optional[float] = None,
        where: Union[str, Sequence[str], None] = None,
        qe: Optional[int] = None,
        qe_alpha: Optional[float] = None,
        rerank: Optional[str] = None,
        sg_m: Optional[int] = None,
        sg_k: Optional[int] = None,
        sg_beta: Optional[float] = None,
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(scores float32 [nq, k], ids int64 [nq, k]); NaN / -1 past the last result."""
    def search_images(
        self,
        paths: Sequence[_Path],
        k: int = 10,
        *,
        min_score: Optional[float] = None,
        where: Union[str, Sequence[str], None] = None,
        crop: Optional[Tuple[float, float, float, float]] = None,
        qe: Optional[int] = None,
        qe_alpha: Optional[float] = None,
        rerank: Optional[str] = None,
        sg_m: Optional[int] = None,
        sg_k: Optional[int] = None,
        sg_beta: Optional[float] = None,
        rerank_k: Optional[int] = None,
        min_inliers: Optional[int] = None,
        spatial_weight: Optional[Union[float, str]] = None,
        matcher: Optional[str] = None,
        match_ratio: Optional[float] = None,
        mutual: Optional[bool] = None,
        ransac: Optional[str] = None,
        ransac_px: Optional[float] = None,
    ) -> List[List[Union[Tuple[str, float], Tuple[str, float, Optional[int]]]]]:
        """Per query, (name, score) best first; with rerank="spatial" (or "superglobal,spatial"),
        (name, score, inliers), inliers None past the verified top rerank_k (default 100).
        Spatial options as the `dolg search` flags: min_inliers, spatial_weight (a number or
        "inliers"), matcher ("mnn" or "lighterglue"), match_ratio, mutual,
        ransac ("homography" or "affine"), ransac_px; those not given follow the index's local
        features (XFeat: mutual, 8 px; DELG: the DELG authors' 0.99 / 20 px)."""
    def names(self, ids: npt.NDArray[np.int64]) -> List[Any]: ...
    def export(self) -> Tuple[List[str], npt.NDArray[np.float32]]: ...
    def duplicates(self, threshold: Optional[float] = None, *, method: str = "auto") -> List[Dict[str, Any]]: ...
    @property
    def default_duplicate_threshold(self) -> float: ...
    def build_dba(self, k: int, alpha: Optional[float] = None) -> None: ...
    def compact(self) -> None: ...
    def info(self) -> Dict[str, Any]: ...
    def set_ef_search(self, ef: int) -> None: ...
    def set_root(self, root: _Path) -> None: ...
    def name_of(self, path: _Path) -> str: ...
    def path_of(self, name: str) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def root(self) -> Optional[str]: ...
    def __len__(self) -> int: ...

def list_images(
    paths: Sequence[_Path], *, exclude: Optional[Sequence[str]] = None, follow_links: bool = False, include_hidden: bool = False
) -> List[str]: ...
def read_image(path: _Path, *, bgr: bool = False, ignore_orientation: bool = False) -> npt.NDArray[np.uint8]: ...
def image_size(path: _Path) -> Tuple[int, int]: ...
def eval_revisited(
    gnd: _Path,
    ranks: Any = None,
    *,
    db: Any = None,
    queries: Any = None,
    distractors: Any = None,
    per_query: bool = False,
    qe: Optional[int] = None,
    qe_alpha: Optional[float] = None,
    rerank: Optional[str] = None,
    sg_m: Optional[int] = None,
    sg_k: Optional[int] = None,
    sg_beta: Optional[float] = None,
    dba: Optional[int] = None,
    dba_alpha: Optional[float] = None,
) -> Dict[str, Any]: ...
def eval_groups(
    groups: _Path,
    images: _Path,
    *,
    db: Optional[_Path] = None,
    model: Optional[Model] = None,
    per_query: bool = False,
    qe: Optional[int] = None,
    qe_alpha: Optional[float] = None,
    rerank: Optional[str] = None,
    sg_m: Optional[int] = None,
    sg_k: Optional[int] = None,
    sg_beta: Optional[float] = None,
    dba: Optional[int] = None,
    dba_alpha: Optional[float] = None,
) -> Dict[str, Any]: ...
