"""Reading image files for scoring, and the run directory's bulk path helpers."""

import numpy as np
import pytest
import torch
from PIL import Image

from discl.rundir import RunDir
from discl.scoring.loading import read_image_chunks, read_images


def _write(path, size, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_read_images_matches_pil_in_order(tmp_path):
    names = ["a b.png", "é ü.png", "x.png", "y.jpg"] * 40  # enough files for several reader threads
    paths, expected = [], []
    for i, name in enumerate(names):
        path = tmp_path / f"{i:03d} {name}"
        pixels = _write(path, (16, 16), i)
        paths.append(str(path))
        expected.append(np.asarray(Image.open(path).convert("RGB")) if name.endswith(".jpg") else pixels)
    images = read_images(paths, 16)
    assert images.shape == (len(names), 3, 16, 16) and images.dtype == torch.uint8
    got = images.permute(0, 2, 3, 1).numpy().astype(int)
    png = np.array([not n.endswith(".jpg") for n in names])
    np.testing.assert_array_equal(got[png], np.stack(expected)[png])  # lossless: exact
    assert np.abs(got[~png] - np.stack(expected)[~png]).max() <= 2  # JPEG decoders may round differently


def test_read_images_fits_other_sizes_and_names_broken_files(tmp_path):
    _write(tmp_path / "wide.png", (40, 20), 0)
    assert read_images([tmp_path / "wide.png"], 16).shape == (1, 3, 16, 16)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(OSError, match="broken.png"):
        read_images([tmp_path / "wide.png", tmp_path / "broken.png"], 16)


def test_read_image_chunks_cover_every_file_once_in_order(tmp_path):
    paths = [str(tmp_path / f"{i}.png") for i in range(23)]
    for i in range(len(paths)):
        _write(tmp_path / f"{i}.png", (8, 8), i)
    whole = read_images(paths, 8)
    chunks = list(read_image_chunks(paths, 8, chunk=5))
    assert [start for start, _ in chunks] == [0, 5, 10, 15, 20]
    assert [len(images) for _, images in chunks] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([images.numpy() for _, images in chunks]), whole.numpy())
    assert list(read_image_chunks([], 8, chunk=5)) == []


def test_missing_files_lists_exactly_the_absent_paths(tmp_path):
    run = RunDir(tmp_path / "run")
    _write(run.root / "synthetic" / "a.png", (4, 4), 0)
    _write(tmp_path / "outside" / "b.png", (4, 4), 1)
    (run.root / "synthetic" / "folder.png").mkdir()
    paths = [
        "synthetic/a.png",                      # relative, present
        "synthetic/gone.png",                   # relative, absent
        str(tmp_path / "outside" / "b.png"),    # absolute, present
        "synthetic/folder.png",                 # a directory, not an image file
        "no_such_dir/c.png",                    # the folder itself is missing
    ]
    assert run.missing_files(paths) == ["synthetic/gone.png", "synthetic/folder.png", "no_such_dir/c.png"]
    assert run.resolve_all(paths[:3]) == [str(run.root / "synthetic" / "a.png"), str(run.root / "synthetic" / "gone.png"), paths[2]]
    assert [str(run.resolve(p)) for p in paths] == run.resolve_all(paths)


def _reference(path, size, geometry):
    """Each geometry as the readers wrote it out before there was one reader."""
    from PIL import ImageOps

    with Image.open(path) as image:
        image = image.convert("RGB")
        if geometry == "squash" and image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        elif geometry == "center-crop" and image.size != size:
            image = ImageOps.fit(image, size, Image.Resampling.BICUBIC)
        elif geometry == "contain":
            scale = size / max(image.size)
            new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(new, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


@pytest.mark.parametrize("geometry, size", [("squash", (16, 16)), ("squash", (48, 27)), ("center-crop", (16, 16)),
                                            ("contain", 64), ("contain", 8), ("native", None)])
def test_read_image_reproduces_each_geometry_exactly(tmp_path, geometry, size):
    from discl.data.images import read_image

    for name, shape in (("wide.png", (40, 20)), ("tall.jpg", (20, 40)), ("square.png", (16, 16))):
        _write(tmp_path / name, shape, 0)
        got = np.asarray(read_image(tmp_path / name, size, geometry))
        np.testing.assert_array_equal(got, _reference(tmp_path / name, size, geometry))
        if geometry == "native":
            assert got.shape == (shape[1], shape[0], 3)
        elif geometry != "contain":
            assert got.shape == (size[1], size[0], 3)


def test_every_reader_goes_through_read_image_with_its_geometry(tmp_path):
    from discl.data.images import load_images
    from discl.generation.sources import load_rgb
    from discl.report.images import thumbnail_uri
    from discl.training.dataset import read_rgb

    _write(tmp_path / "wide.png", (40, 20), 3)
    path = tmp_path / "wide.png"
    np.testing.assert_array_equal(load_images([path], 16)[0].permute(1, 2, 0).numpy(), _reference(path, (16, 16), "squash"))
    np.testing.assert_array_equal(read_images([path], 16)[0].permute(1, 2, 0).numpy(), _reference(path, (16, 16), "center-crop"))
    np.testing.assert_array_equal(load_rgb(path, (16, 16)).permute(1, 2, 0).numpy(), _reference(path, (16, 16), "squash"))
    np.testing.assert_array_equal(load_rgb(path, None).permute(1, 2, 0).numpy(), _reference(path, None, "native"))
    np.testing.assert_array_equal(np.asarray(read_rgb(str(path))), _reference(path, None, "native"))
    import base64
    import io

    png = base64.b64decode(thumbnail_uri(path, 64).split(",", 1)[1])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), _reference(path, 64, "contain"))


def test_read_image_refuses_unknown_geometries_and_mismatched_sizes(tmp_path):
    from discl.data.images import read_image

    _write(tmp_path / "a.png", (8, 8), 0)
    with pytest.raises(ValueError, match="unknown image geometry 'stretch'"):
        read_image(tmp_path / "a.png", 8, "stretch")
    with pytest.raises(ValueError, match="native"):
        read_image(tmp_path / "a.png", 8, "native")
    with pytest.raises(ValueError, match="needs a size"):
        read_image(tmp_path / "a.png", None, "squash")
