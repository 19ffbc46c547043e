"""The one exception type the image builder raises for problems the user can fix."""


class ImageError(Exception):
    """A guest image cannot be built; the message is one sentence saying what to do.

    Callers (the CLIs) print ``str(err)`` without a traceback.
    """
