"""One exception type for every problem with a user's input, so entry points can print it plainly."""


class InputError(ValueError):
    """A file or config the user supplied is unusable; the message names the file and the field."""


class UnsafePickleError(InputError):
    """A pickle asked to load a global that is not plain data (it could run code)."""
