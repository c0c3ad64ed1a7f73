"""The one mechanism through which deform_ext changes mmengine and mmdet.

A ``Patch`` names the package and the versions it was written for and, when installed,
replaces attributes (of modules or classes) or entries (of dicts) with new values that
wrap the originals. It records every original, so that it can be undone exactly;
installing it twice changes nothing; outside its versions it warns once and stays off
rather than change code it was not written against.
"""
import importlib.metadata
import warnings
from typing import Callable, Iterable, List, Tuple

_ABSENT = object()  # the attribute or key did not exist before the patch

# (owner, name, new value): owner is a module or class (an attribute) or a dict (a key)
Replacement = Tuple[object, str, object]


def installed_version(package: str) -> str:
    """The installed distribution version of ``package`` ('' when not installed)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ''


def _current(owner, name):
    if isinstance(owner, dict):
        return owner.get(name, _ABSENT)
    return vars(owner).get(name, _ABSENT)  # the owner's own entry, not an inherited one


def _assign(owner, name, value) -> None:
    if isinstance(owner, dict):
        if value is _ABSENT:
            owner.pop(name, None)
        else:
            owner[name] = value
    elif value is _ABSENT:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


class Patch:
    """A reversible, version-guarded change to one installed package.

    Args:
        name (str): short name, used in messages (e.g. ``'checkpoint_loading'``).
        package (str): the distribution patched, e.g. ``'mmengine'``.
        versions (str): the version prefix it was written for, e.g. ``'0.10.'``.
        replacements (callable): returns the ``(owner, name, new value)`` triples to
            apply; called at each install, so that it wraps the current originals.
        purpose (str): what the patch fixes, said when it stays off.
    """

    def __init__(self, name: str, package: str, versions: str,
                 replacements: Callable[[], Iterable[Replacement]], purpose: str):
        self.name = name
        self.package = package
        self.versions = versions
        self.purpose = purpose
        self._replacements = replacements
        self._originals: List[Replacement] = []
        self._warned = False

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def supports(self, version: str) -> bool:
        return version.startswith(self.versions)

    def install(self) -> bool:
        """Apply the patch; True when it is in place (now or already)."""
        if self.installed:
            return True
        version = installed_version(self.package)
        if not self.supports(version):
            self._warn_unsupported(version)
            return False
        for owner, name, value in self._replacements():
            self._originals.append((owner, name, _current(owner, name)))
            _assign(owner, name, value)
        return True

    def uninstall(self) -> None:
        """Put back every original value (a no-op when not installed)."""
        while self._originals:
            owner, name, original = self._originals.pop()
            _assign(owner, name, original)

    def _warn_unsupported(self, version: str) -> None:
        if self._warned:
            return
        self._warned = True
        found = f'{self.package} {version}' if version else f'no {self.package}'
        warnings.warn(
            f'deform_ext compatibility patch {self.name!r} was written for '
            f'{self.package} {self.versions}x and found {found}: it stays off, so '
            f'{self.purpose} is not provided.', RuntimeWarning, stacklevel=3)
