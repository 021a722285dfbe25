"""Safe object names for uploads.

A client-supplied file name is hostile input: it may carry a path
(``../../etc/passwd``, ``C:\\Users\\x``, ``/etc/passwd``), control characters
(NUL, newlines that would split a header), look-alike forms that only NFKC
folds (full-width slashes), or be longer than any file system accepts. Every
storage key is ``tablos/<tablo uuid>/<file uuid>/<safe name>``: the uuids make
it unique, the safe name keeps it readable.
"""

from __future__ import annotations

import unicodedata
import uuid

# File systems (ext4, APFS, NTFS) limit one name component to 255 bytes.
MAX_NAME_BYTES = 255
# An "extension" longer than this is more likely part of the name.
MAX_EXTENSION_BYTES = 32
FALLBACK_NAME = "file"
# Reserved on Windows and awkward in shells and URLs; replaced in storage keys only.
_UNSAFE_IN_KEY = set('<>:"|?*#%')


def _is_control(char: str) -> bool:
    # Cc: C0/C1 controls (NUL, CR, LF, ESC, DEL). Cf: invisible format characters
    # such as RIGHT-TO-LEFT OVERRIDE that disguise an extension ("gpj.exe").
    return unicodedata.category(char) in {"Cc", "Cf"}


def display_name(raw: str) -> str:
    """The name shown to people and sent in Content-Disposition.

    NFKC-normalized, last path component only (``/`` and ``\\`` both count as
    separators), without control or format characters, never ``.``/``..``/empty.
    """
    name = unicodedata.normalize("NFKC", raw or "")
    name = "".join(" " if char in "\t\r\n" else char for char in name)
    name = "".join(char for char in name if not _is_control(char))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(name.split())  # collapse whitespace runs, trim both ends
    if not name.strip(". "):  # "", ".", "..", ". ." name no file
        return FALLBACK_NAME
    return truncate_utf8(name, MAX_NAME_BYTES)


def safe_name(raw: str) -> str:
    """``display_name`` with characters that are unsafe in an object key replaced."""
    name = display_name(raw)
    name = "".join("_" if char in _UNSAFE_IN_KEY else char for char in name)
    # A leading dot would make a hidden file on local storage.
    name = name.lstrip(".") or FALLBACK_NAME
    return truncate_utf8(name, MAX_NAME_BYTES)


def truncate_utf8(name: str, max_bytes: int) -> str:
    """Cut ``name`` to at most ``max_bytes`` UTF-8 bytes on a character boundary,
    keeping the extension (``.pdf``) when there is a short one."""
    encoded = name.encode("utf-8")
    if len(encoded) <= max_bytes:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}".encode() if dot and stem else b""
    if len(suffix) > MAX_EXTENSION_BYTES:
        suffix = b""
        stem = name
    elif not suffix:
        stem = name
    room = max_bytes - len(suffix)
    # errors="ignore" drops a multi-byte character cut in half at the end.
    head = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip(" ")
    return (head or FALLBACK_NAME[: max(room, 1)]) + suffix.decode("utf-8")


def storage_key(*, tablo_id: uuid.UUID, file_id: uuid.UUID, original_name: str) -> str:
    """``tablos/<tablo uuid>/<file uuid>/<safe name>``."""
    return f"tablos/{tablo_id}/{file_id}/{safe_name(original_name)}"


def tablo_prefix(*, tablo_id: uuid.UUID) -> str:
    """The key prefix of every object of one tablo (with the trailing slash)."""
    return f"tablos/{tablo_id}/"
