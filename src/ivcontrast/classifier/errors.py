"""The classifier's exceptions: one base class, so a caller can fail a series on any of them."""


class ClassifierError(Exception):
    """Base class; the message names the file or value and the reason."""


class VolumeError(ClassifierError):
    """An input series or volume cannot be read or is not usable (not axial, inconsistent...)."""


class PackageError(ClassifierError):
    """A model package is missing, malformed, or fails its checksums."""


class BackendError(ClassifierError):
    """An inference backend cannot be set up or given this input."""
