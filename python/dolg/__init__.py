"""dolg: DOLG image retrieval from Python — descriptors, searchable photo collections and
retrieval evaluation, computed by the Rust library (the numbers are those of the `dolg` CLI).

    import dolg
    model = dolg.Model(backbone="mobilenetv2")            # or Model(weights="r50.pyth")
    x = model.describe(["a.jpg", "b.jpg"])                # float32 [2, D], L2-normalised
    photos = dolg.Collection.create("photos.idx", model, root="photos/")
    photos.add(["photos/"])
    scores, ids = photos.search(x, k=5)                   # float32 / int64 [2, 5], -1 padding
    print(photos.names(ids))

Errors of the library are raised as `dolg.DolgError`; heavy calls release the GIL.
"""

from . import eval
from ._dolg import (
    Collection,
    DolgError,
    Model,
    __version__,
    image_size,
    list_images,
    read_image,
)

__all__ = ["Collection", "DolgError", "Model", "eval", "image_size", "list_images", "read_image", "__version__"]
