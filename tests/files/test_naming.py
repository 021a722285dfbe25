import uuid

import pytest

from files import naming


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("C:\\Users\\ann\\photo.jpg", "photo.jpg"),
        ("/etc/shadow", "shadow"),
        ("dir/sub/", "file"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        ("   ", "file"),
        ("a\x00b\x1b.txt", "ab.txt"),
        ("line\r\nbreak.txt", "line break.txt"),
        # RIGHT-TO-LEFT OVERRIDE would display "evilexe.jpg" as "evil‮gpj.exe".
        ("evil\u202egpj.exe", "evilgpj.exe"),
        # Full-width "../" folds to ASCII under NFKC and is then stripped.
        ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),
        ("ﬁle.txt", "file.txt"),  # ligature fi
        ("  spaced   out .txt ", "spaced out .txt"),
    ],
)
def test_display_name_removes_paths_controls_and_normalizes(raw, expected):
    assert naming.display_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('what?*<>:"|.txt', "what_______.txt"),
        ("100%#1.txt", "100__1.txt"),
        (".bashrc", "bashrc"),
        ("..hidden", "hidden"),
        ("résumé.pdf", "résumé.pdf"),
    ],
)
def test_safe_name_replaces_key_unsafe_characters(raw, expected):
    assert naming.safe_name(raw) == expected


def test_long_name_is_cut_to_255_bytes_on_a_character_boundary_keeping_the_extension():
    raw = "é" * 300 + ".pdf"  # 600 bytes of 2-byte characters
    name = naming.safe_name(raw)
    encoded = name.encode("utf-8")
    assert len(encoded) <= naming.MAX_NAME_BYTES
    assert name.endswith(".pdf")
    assert set(name[: -len(".pdf")]) == {"é"}
    # 255 - 4 = 251 bytes of room: 125 whole "é", never half of one.
    assert name == "é" * 125 + ".pdf"


def test_long_name_with_four_byte_characters():
    name = naming.safe_name("😀" * 100 + ".txt")
    assert name == "😀" * 62 + ".txt"  # (255 - 4) // 4 = 62
    assert len(name.encode()) == 252


def test_long_name_without_extension_is_cut_to_255_bytes():
    assert naming.safe_name("x" * 1000) == "x" * 255


def test_overlong_extension_is_not_kept_as_an_extension():
    raw = "a." + "b" * 400
    name = naming.safe_name(raw)
    assert len(name.encode()) == 255
    assert name.startswith("a.bbb")


def test_storage_key_layout():
    tablo_id, file_id = uuid.uuid4(), uuid.uuid4()
    key = naming.storage_key(
        tablo_id=tablo_id, file_id=file_id, original_name="../../../x/..\\evil.html"
    )
    assert key == f"tablos/{tablo_id}/{file_id}/evil.html"
    assert key.startswith(naming.tablo_prefix(tablo_id=tablo_id))


@pytest.mark.parametrize("raw", ["../a", "/abs", "a\\b", "\x00", "a/../../b", "." * 300])
def test_storage_key_never_escapes_its_prefix(raw):
    tablo_id, file_id = uuid.uuid4(), uuid.uuid4()
    key = naming.storage_key(tablo_id=tablo_id, file_id=file_id, original_name=raw)
    prefix = f"tablos/{tablo_id}/{file_id}/"
    assert key.startswith(prefix)
    rest = key[len(prefix) :]
    assert rest not in {"", ".", ".."}
    assert "/" not in rest
    assert "\\" not in rest
