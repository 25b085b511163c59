"""formats._direct_kind: whether a page image can be the searchable PDF's page as it is, decided
from its header alone (the check ran once per page image of a run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageFile

from ocrdesk.engine import formats


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_upright_images_are_used_as_they_are_and_turned_ones_not(
    tmp_path: Path, suffix: str
) -> None:
    page = Image.new("RGB", (64, 48), "white")
    plain, upright, turned = (tmp_path / f"{name}{suffix}" for name in ("plain", "up", "turned"))
    page.save(plain)
    page.save(upright, exif=_exif(1))
    page.save(turned, exif=_exif(6))
    assert formats._direct_kind(plain) == "image"
    assert formats._direct_kind(upright) == "image"
    assert formats._direct_kind(turned) is None


def test_the_pixels_are_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.png", "b.jpg"):
        Image.new("RGB", (64, 48), "white").save(tmp_path / name)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert formats._direct_kind(tmp_path / "a.png") == "image"
    assert formats._direct_kind(tmp_path / "b.jpg") == "image"
