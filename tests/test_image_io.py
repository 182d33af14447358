"""Reading images of every kind OpenCV decodes; writing label maps."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image
from PIL import ImageOps

from pspnet import image_io
from pspnet.datasets import base as datasets_base
from pspnet.errors import UserError
from tests.helpers import dataset_factory


@pytest.fixture
def rgb():
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (3, 5, 7)).astype(np.uint8)


def write_bgr(path, rgb_chw):
    cv2.imwrite(str(path), np.ascontiguousarray(
        rgb_chw.transpose(1, 2, 0)[:, :, ::-1]))


@pytest.mark.parametrize('ext', ['.png', '.bmp', '.tif', '.ppm', '.webp'])
def test_read_lossless_color(tmp_path, rgb, ext):
    path = tmp_path / ('img' + ext)
    write_bgr(path, rgb)
    if ext == '.webp':
        cv2.imwrite(str(path), rgb.transpose(1, 2, 0)[:, :, ::-1].copy(),
                    [cv2.IMWRITE_WEBP_QUALITY, 101])  # lossless
    img = image_io.read_image(str(path))
    assert img.shape == (3, 5, 7)
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, rgb)  # RGB order, [0, 255]


def test_read_jpeg(tmp_path):
    color = np.array([200, 30, 90], np.uint8)
    path = tmp_path / 'img.jpg'
    write_bgr(path, np.broadcast_to(color[:, None, None], (3, 16, 16)))
    img = image_io.read_image(str(path))
    assert img.shape == (3, 16, 16)
    np.testing.assert_allclose(img.mean(axis=(1, 2)), color, atol=3)


def test_read_jpeg_applies_exif_orientation(tmp_path):
    # A 16 x 32 image whose EXIF says "rotate 90 degrees clockwise".
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'rotated.jpg'
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    img = image_io.read_image(str(path))
    assert img.shape == (3, 32, 16)
    assert img[:, :8].mean() > 200 and img[:, 24:].mean() < 50


def test_read_grayscale(tmp_path):
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    path = tmp_path / 'gray.png'
    cv2.imwrite(str(path), gray)
    img = image_io.read_image(str(path))
    assert img.shape == (3, 5, 7)
    for channel in img:
        np.testing.assert_array_equal(channel, gray)


def test_read_16_bit(tmp_path):
    gray = np.array([[0, 257, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / 'gray16.png'), gray)
    img = image_io.read_image(str(tmp_path / 'gray16.png'))
    np.testing.assert_allclose(img[0], [[0, 1, 255]], atol=1e-3)

    color = np.zeros((2, 2, 3), np.uint16)
    color[..., 2] = 65535  # red in OpenCV's BGR
    cv2.imwrite(str(tmp_path / 'color16.tif'), color)
    img = image_io.read_image(str(tmp_path / 'color16.tif'))
    assert img.shape == (3, 2, 2) and img.dtype == np.float32
    np.testing.assert_allclose(img[:, 0, 0], [255, 0, 0], atol=1e-3)


def test_read_float_tiff(tmp_path):
    values = np.array([[0, 0.5, 1, 2]], np.float32)
    cv2.imwrite(str(tmp_path / 'float.tif'), values)
    img = image_io.read_image(str(tmp_path / 'float.tif'))
    np.testing.assert_allclose(img[1], [[0, 127.5, 255, 255]], atol=1e-3)


def test_read_rgba_composites_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, :, :3] = (10, 20, 30)
    rgba[0, :, 3] = (255, 0, 51)  # opaque, transparent, 20 % opaque
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    img = image_io.read_image(str(tmp_path / 'rgba.png'))
    assert img.shape == (3, 1, 3)
    np.testing.assert_allclose(img[:, 0, 0], [10, 20, 30], atol=1e-3)
    np.testing.assert_allclose(img[:, 0, 1], [255, 255, 255], atol=1e-3)
    np.testing.assert_allclose(img[:, 0, 2], 0.2 * np.array([10, 20, 30])
                               + 0.8 * 255, atol=1e-2)


def test_read_gray_alpha(tmp_path):
    la = np.array([[[100, 255], [100, 0]]], np.uint8)
    Image.fromarray(la, 'LA').save(tmp_path / 'la.png')
    img = image_io.read_image(str(tmp_path / 'la.png'))
    np.testing.assert_allclose(img[:, 0, 0], [100] * 3, atol=1e-3)
    np.testing.assert_allclose(img[:, 0, 1], [255] * 3, atol=1e-3)


def test_read_palette(tmp_path):
    index = np.array([[0, 1, 2]], np.uint8)
    palette = Image.fromarray(index, 'P')
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / 'palette.png')
    img = image_io.read_image(str(tmp_path / 'palette.png'))
    np.testing.assert_array_equal(img[:, 0], np.eye(3) * 255)


def test_missing_image(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        image_io.read_image(str(tmp_path / 'nope.png'))


def test_folder_is_no_image(tmp_path):
    with pytest.raises(UserError, match='it is a folder'):
        image_io.read_image(str(tmp_path))


@pytest.mark.parametrize('content', [b'', b'not an image',
                                     b'\xff\xd8\xff\xe0 broken jpeg'])
def test_corrupt_image(tmp_path, content):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(content)
    with pytest.raises(UserError, match='cannot read image .*broken.jpg: '
                       'not an image file or corrupt'):
        image_io.read_image(str(path))


def test_truncated_png(tmp_path, rgb):
    write_bgr(tmp_path / 'whole.png', rgb)
    data = (tmp_path / 'whole.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match='not an image file or corrupt'):
        image_io.read_image(str(tmp_path / 'cut.png'))


@pytest.mark.parametrize('n_class,dtype', [(19, np.uint8), (256, np.uint8),
                                           (300, np.uint16)])
def test_write_label_png_round_trip(tmp_path, n_class, dtype):
    rng = np.random.RandomState(1)
    label = rng.randint(0, n_class, (9, 11)).astype(np.int32)
    label[0, 0] = n_class - 1
    path = str(tmp_path / 'sub' / 'label.png')
    image_io.write_label_png(path, label, n_class)
    back = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, label)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), label)


def test_write_label_png_ignore_label(tmp_path):
    label = np.array([[-1, 0, 18]], np.int32)
    path = str(tmp_path / 'label.png')
    image_io.write_label_png(path, label, 19)
    np.testing.assert_array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED),
                                  [[255, 0, 18]])
    with pytest.raises(ValueError, match='ignore label'):
        image_io.write_label_png(path, label, 256)
    with pytest.raises(ValueError, match='must lie in'):
        image_io.write_label_png(path, label, 10)


def test_write_image_round_trip(tmp_path, rgb):
    path = str(tmp_path / 'out.png')
    image_io.write_image(path, rgb.astype(np.float32))
    np.testing.assert_array_equal(image_io.read_image(path), rgb)


def test_write_into_unwritable_place(tmp_path, rgb):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(UserError, match='cannot write'):
        image_io.write_image(str(blocker / 'out.png'), rgb)


def test_list_images(tmp_path, rgb):
    for name in ['b.png', 'a.JPG', 'c.txt', 'd.tiff']:
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'sub.png').mkdir()
    other = tmp_path / 'b.png'
    listed = image_io.list_images([str(tmp_path), str(other)])
    assert [os.path.basename(p) for p in listed] == ['a.JPG', 'b.png',
                                                     'd.tiff']
    with pytest.raises(UserError, match='does not exist'):
        image_io.list_images([str(tmp_path / 'nope.png')])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(UserError, match='holds no images'):
        image_io.list_images([str(empty)])


def _photo_like(rng, size):
    """(3, H, W) smooth image with edges: JPEG data with real content."""
    from tests.helpers.random_weights import smooth_image
    return smooth_image(rng, size).astype(np.uint8)


@pytest.mark.parametrize('seed', range(6))
def test_damaged_images_are_refused(tmp_path, seed):
    """Any cut of a JPEG, PNG, WebP or BMP file, and JPEGs with bytes of
    their compressed data overwritten, are errors; OpenCV alone would
    decode cut JPEGs with grey parts."""
    rng = np.random.RandomState(seed)
    size = (int(rng.randint(40, 200)), int(rng.randint(40, 200)))
    rgb = _photo_like(rng, size)
    for ext in ('.jpg', '.png', '.webp', '.bmp'):
        whole = tmp_path / ('whole' + ext)
        write_bgr(whole, rgb)
        data = whole.read_bytes()
        assert image_io.read_image(str(whole)).shape == (3,) + size
        # A cut anywhere from the header to just before the end.
        cut = int(rng.randint(2, len(data) - 2))
        damaged = tmp_path / ('cut' + ext)
        damaged.write_bytes(data[:cut])
        with pytest.raises(UserError, match='cannot read image .*cut'):
            image_io.read_image(str(damaged))
        with pytest.raises(UserError, match='cannot read image .*cut'):
            datasets_base.read_rgb_image(str(damaged))
    # A marker inside the compressed data (an early end of image, a restart
    # out of sequence): libjpeg warns and decodes on, OpenCV says nothing.
    # (Damage that still forms valid compressed data is an image.)
    jpeg = (tmp_path / 'whole.jpg').read_bytes()
    scan = jpeg.rindex(b'\xff\xda')   # the compressed data follows
    for marker in (b'\xff\xd9', b'\xff\xd3'):
        start = int(rng.randint(scan + 20, len(jpeg) - 80))
        broken = jpeg[:start] + marker + jpeg[start + 2:]
        (tmp_path / 'marked.jpg').write_bytes(broken)
        with pytest.raises(UserError, match='truncated or corrupt'):
            image_io.read_image(str(tmp_path / 'marked.jpg'))


# EXIF orientation: every file is used as displayed ----------------------

_LOSSLESS = {'.png': {}, '.webp': {'lossless': True}, '.tif': {}}


@pytest.mark.parametrize('orientation', range(1, 9))
@pytest.mark.parametrize('ext', ['.jpg', '.png', '.webp', '.tif'])
def test_images_are_read_as_displayed(tmp_path, ext, orientation):
    """Every reader and the header give the picture as Pillow's
    exif_transpose shows it, for each of the 8 orientations, random
    non-square sizes and the formats that carry an orientation (OpenCV
    alone turns JPEGs and PNGs, not WebPs, and only in some modes)."""
    rng = np.random.RandomState(orientation * 10 + len(ext))
    h, w = rng.randint(8, 40, 2)
    w = h + 1 + w  # not square
    if rng.rand() < 0.5:
        h, w = w, h
    displayed = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    if ext == '.jpg':  # smooth content, so that JPEG keeps it closely
        displayed = _photo_like(rng, (h, w)).transpose(1, 2, 0)
    path = str(tmp_path / ('photo' + ext))
    dataset_factory.write_oriented(path, displayed, orientation,
                                   **_LOSSLESS.get(ext, {'quality': 98,
                                                        'subsampling': 0}))
    with Image.open(path) as f:
        viewer = np.asarray(ImageOps.exif_transpose(f))
    stored = dataset_factory.stored_for_display(displayed, orientation)
    # JPEG decoders differ by a few levels; a picture turned wrong differs
    # by far more.
    tolerance = 0 if ext in _LOSSLESS else 16
    assert np.abs(viewer.astype(int) - displayed).max() <= tolerance
    for other in range(1, 9):
        wrong = image_io.apply_orientation(stored, other)
        if other != orientation and wrong.shape == displayed.shape:
            assert np.abs(wrong.astype(int) - displayed).max() > tolerance
    for read in (image_io.read_image, datasets_base.read_rgb_image):
        img = read(path)
        assert img.shape == (3, h, w)
        assert np.abs(img.transpose(1, 2, 0) - displayed).max() <= tolerance
    header = image_io.image_header(path)
    assert header.size == (w, h)
    assert header.mode == 'RGB'


@pytest.mark.parametrize('orientation', range(1, 9))
def test_orientation_with_alpha_and_grey(tmp_path, orientation):
    """read_image keeps alpha (OpenCV's IMREAD_UNCHANGED, which never
    turns the picture) and still shows the picture as displayed."""
    rng = np.random.RandomState(orientation)
    rgba = rng.randint(0, 256, (6, 13, 4)).astype(np.uint8)
    rgba[..., 3] = 255
    path = str(tmp_path / 'rgba.png')
    dataset_factory.write_oriented(path, rgba, orientation)
    np.testing.assert_allclose(image_io.read_image(path).transpose(1, 2, 0),
                               rgba[..., :3], atol=1e-3)
    gray = rng.randint(0, 256, (6, 13)).astype(np.uint8)
    dataset_factory.write_oriented(str(tmp_path / 'grey.png'), gray,
                                   orientation)
    for read in (image_io.read_image, datasets_base.read_rgb_image):
        img = read(str(tmp_path / 'grey.png'))
        for channel in img:
            np.testing.assert_array_equal(channel, gray)


@pytest.mark.parametrize('orientation', range(1, 9))
def test_apply_orientation_is_pillows(orientation):
    rng = np.random.RandomState(orientation)
    for shape in ((3, 5), (4, 7, 3), (1, 6)):
        array = rng.randint(0, 256, shape).astype(np.uint8)
        method = dataset_factory.EXIF_TRANSPOSITIONS[orientation]
        expected = (array if method is None else
                    np.asarray(Image.fromarray(array).transpose(method)))
        np.testing.assert_array_equal(
            image_io.apply_orientation(array, orientation), expected)


def test_unusual_orientation_values_are_ignored(tmp_path):
    """Values outside 1 to 8 (broken EXIF) leave the picture as stored, as
    viewers do; a file Pillow cannot open has no header."""
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 256, (4, 9, 3)).astype(np.uint8)
    for value in (0, 9, 300):
        exif = Image.Exif()
        exif[0x0112] = value
        path = str(tmp_path / 'odd{}.png'.format(value))
        Image.fromarray(pixels).save(path, exif=exif.tobytes())
        np.testing.assert_array_equal(
            image_io.read_image(path).transpose(1, 2, 0), pixels)
        assert image_io.image_header(path) == ((9, 4), 'RGB', 1)
    (tmp_path / 'x.png').write_bytes(b'nothing')
    assert image_io.image_header(str(tmp_path / 'x.png')) is None
