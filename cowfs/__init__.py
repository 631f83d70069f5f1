"""cowfs: a rootless copy-on-write overlay filesystem (kernel overlayfs "userxattr" format).

Python API (cowfs/api.py): `with cowfs.mounted(lower) as mnt:` and, for trio,
`async with cowfs.open_mount(lower) as mnt:`; a mount that cannot be made raises MountError.
"""

__version__ = "0.1.0"

from .api import mounted, open_mount  # noqa: E402
from .mount import MountError  # noqa: E402

__all__ = ["MountError", "__version__", "mounted", "open_mount"]
