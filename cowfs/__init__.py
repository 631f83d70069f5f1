"""cowfs: a rootless copy-on-write overlay filesystem (kernel overlayfs "userxattr" format).

Python API (cowfs/api.py): `with cowfs.mounted(lower) as mnt:` and, for trio,
`async with cowfs.open_mount(lower) as mnt:`; a mount that cannot be made raises MountError.

The names are imported when first used: the mount daemon (a fork of `cowfs mount`) and the CLI
carry none of the API's code.
"""

__version__ = "0.1.0"

__all__ = ["MountError", "__version__", "mounted", "open_mount"]

#: attribute -> the submodule that defines it
_LAZY = {"mounted": "api", "open_mount": "api", "MountError": "mount"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
