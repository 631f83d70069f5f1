"""cowfs: a rootless copy-on-write overlay filesystem (kernel overlayfs "userxattr" format)."""

__version__ = "0.1.0"
