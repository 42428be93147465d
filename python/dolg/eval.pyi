import os
from typing import Any, Dict, Optional, Union

import numpy as np
import numpy.typing as npt

from ._dolg import Model

_Path = Union[str, "os.PathLike[str]"]

def revisited(
    gnd: _Path,
    ranks: Optional[Union[_Path, npt.NDArray[np.integer]]] = None,
    *,
    db: Optional[Union[_Path, npt.NDArray[np.float32]]] = None,
    queries: Optional[Union[_Path, npt.NDArray[np.float32]]] = None,
    distractors: Optional[Union[_Path, npt.NDArray[np.float32]]] = None,
    per_query: bool = False,
    qe: Optional[int] = None,
    qe_alpha: Optional[float] = None,
    rerank: Optional[str] = None,
    sg_m: Optional[int] = None,
    sg_k: Optional[int] = None,
    sg_beta: Optional[float] = None,
    dba: Optional[int] = None,
    dba_alpha: Optional[float] = None,
) -> Dict[str, Any]:
    """Revisited Oxford/Paris mAP and mP@1,5,10 (Easy/Medium/Hard), as `dolg eval revisited --json`."""

def groups(
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
) -> Dict[str, Any]:
    """mAP / mP@k of a collection described by a groups CSV, as `dolg eval groups --json`."""
