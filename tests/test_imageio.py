"""Images are decoded correctly whatever their form, and a bad file is a clear per-image error."""
import io

import numpy as np
import pytest
from PIL import Image

from daemon.imageio import ImageError, decode_image, read_image


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _reference() -> Image.Image:
    """White page, black bar top-left, red square bottom-right."""
    im = Image.new("RGB", (120, 80), (255, 255, 255))
    im.paste((0, 0, 0), (10, 10, 60, 20))
    im.paste((255, 0, 0), (90, 50, 110, 70))
    return im


def test_rgb_png_comes_back_as_bgr():
    bgr = decode_image(_png(_reference()))
    assert bgr.shape == (80, 120, 3) and bgr.dtype == np.uint8
    assert tuple(bgr[60, 100]) == (0, 0, 255)        # red in BGR order
    assert tuple(bgr[15, 30]) == (0, 0, 0)


def test_palette_png_keeps_its_colours():
    # a known peer ignores the palette and reads palette PNGs as almost black
    bgr = decode_image(_png(_reference().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)))
    assert bgr[0, 0].min() > 240
    assert tuple(bgr[60, 100]) == (0, 0, 255)


def test_palette_png_with_transparency_is_composited_on_white():
    im = _reference().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    white_index = im.getpixel((0, 0))
    bgr = decode_image(_png(im, transparency=white_index))
    assert bgr[0, 0].min() > 240 and bgr[15, 30].max() < 10


def test_grey_png_becomes_three_channels():
    bgr = decode_image(_png(_reference().convert("L")))
    assert bgr.shape == (80, 120, 3) and bgr[0, 0].tolist() == [255, 255, 255]


def test_16_bit_grey_png_is_scaled_not_clipped():
    a = np.full((40, 60), 65535, dtype=np.uint16)
    a[10:20, 10:30] = 0
    a[25:35, 10:30] = 32768
    bgr = decode_image(_png(Image.fromarray(a)))
    assert bgr[0, 0, 0] == 255 and bgr[15, 15, 0] == 0 and 126 <= bgr[30, 15, 0] <= 129


def test_alpha_is_composited_on_white():
    # transparent background with black text: plain channel dropping would give black on black
    rgba = Image.new("RGBA", (50, 30), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (5, 5, 25, 15))
    bgr = decode_image(_png(rgba))
    assert bgr[25, 45].tolist() == [255, 255, 255] and bgr[10, 10].tolist() == [0, 0, 0]


def test_exif_rotation_is_applied():
    im = _reference()
    exif = Image.Exif()
    exif[0x0112] = 6          # orientation: rotate 90 CW to display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    bgr = decode_image(buf.getvalue())
    assert bgr.shape[:2] == (120, 80)   # portrait once turned upright


def test_truncated_file_is_a_clear_error(tmp_path):
    data = _png(_reference())
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(path)


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_garbage_and_empty_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        read_image(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        read_image(tmp_path / "nope.png")
