"""Finding a data file offline first."""

import os

ENVIRONMENT_VARIABLE = "KERAS_LOCAL_DATA_DIR"


def keras_cache_dir():
    base = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(base, "datasets")


def find_data_file(filename, path=None, download=None):
    """Returns the path of `filename`, searching in order: `path` (a file or
    a folder), `$KERAS_LOCAL_DATA_DIR`, the Keras cache (`~/.keras/datasets`),
    then `download()` (the usual online source) when given.

    Raises:
        FileNotFoundError: with every place that was tried.
    """
    tried = []
    candidates = []
    if path is not None:
        path = os.fspath(path)
        candidates.append(path if not os.path.isdir(path) else os.path.join(path, filename))
    env = os.environ.get(ENVIRONMENT_VARIABLE)
    if env:
        candidates.append(os.path.join(env, filename))
    else:
        tried.append(f"${ENVIRONMENT_VARIABLE} (not set)")
    candidates.append(os.path.join(keras_cache_dir(), filename))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
        tried.append(candidate)
    if download is not None:
        try:
            return download()
        except Exception as error:  # noqa: BLE001 - reported below
            tried.append(f"download ({type(error).__name__}: {error})")
    else:
        tried.append("download (no public source for this file)")
    raise FileNotFoundError(
        f"Could not find the data file {filename!r}. Tried: "
        + "; ".join(tried)
        + f". Pass `path=` to the loader or set ${ENVIRONMENT_VARIABLE} to "
        "the folder that holds it."
    )
