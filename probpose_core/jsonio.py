"""JSON reading and writing with clear errors (shared by every file-reading command)."""
import json
import math
from pathlib import Path

from .errors import InputError


def load_json(path, what: str = "JSON file"):
    """Parse ``path``; missing files and malformed JSON raise InputError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def dump_json(obj, path, compact: bool = False) -> None:
    """Write ``obj`` as indented JSON, creating parent folders; NaN is refused. ``compact``: one
    line without spaces (for polygons: indentation puts every vertex number on a line of its own)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = {"separators": (",", ":")} if compact else {"indent": 2}
    path.write_text(json.dumps(obj, allow_nan=False, **layout) + "\n")


def require_finite(values, where: str) -> None:
    """Raise InputError if any number in the flat sequence ``values`` is NaN or infinite."""
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise InputError(f"{where}: expected finite numbers, got {v!r}")
