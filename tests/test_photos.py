"""Real photo folders: decoding rules (EXIF, modes, resize policies, draft mode), the decode cache, bad files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from photos import bomb_png, chelsea, exif_rotated, png_bytes, write_bad_photos, write_texture_folder
from PIL import Image
from typer.testing import CliRunner

from trainlab.config import DataConfig
from trainlab.data import create_dataset
from trainlab.data.decode import _draft, decode_image
from trainlab.data.ingest import ingest
from trainlab.errors import CorruptDataError


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_an_exif_rotated_photo_is_seen_upright() -> None:
    upright = chelsea()  # 451 x 300, landscape
    want = decode_image(png_bytes(upright), "upright.png", "RGB", (60, 90), "squish")
    stored = Image.open(io.BytesIO(exif_rotated(upright)))
    assert stored.size == (300, 451)  # portrait on disk, as a phone stores it
    assert np.array_equal(decode_image(exif_rotated(upright), "phone.png", "RGB", (60, 90), "squish"), want)
    # a JPEG (lossy, so close rather than equal) is turned too; unturned, it would be another picture
    turned = decode_image(exif_rotated(upright, "JPEG"), "phone.jpg", "RGB", (60, 90), "squish").astype(int)
    unturned = np.asarray(stored.convert("RGB").resize((90, 60), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(turned - want).mean() < 3 < np.abs(unturned.astype(int) - want).mean()


def test_every_mode_becomes_the_datasets_channels_by_the_documented_rule() -> None:
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    transparent.paste((0, 0, 255, 255), (0, 0, 4, 8))  # left half opaque blue, right half fully transparent red
    rgb = decode_image(png_bytes(transparent), "a.png", "RGB", (8, 8), "squish")
    assert rgb[:, 0, 0].tolist() == [0, 0, 255] and rgb[:, 0, 7].tolist() == [255, 255, 255]  # alpha on white
    grey_alpha = Image.new("LA", (4, 4), (0, 0))
    assert decode_image(png_bytes(grey_alpha), "la.png", "L", (4, 4), "squish").max() == 255
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.info["transparency"] = 0  # index 0 transparent, index 1 opaque green
    assert decode_image(png_bytes(palette), "p.png", "RGB", (4, 4), "squish")[:, 0, 0].tolist() == [10, 200, 30]
    # 16-bit grey (scientific cameras, PNG exports): 0..65535 scaled to 0..255
    levels = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    sixteen = Image.fromarray(levels)
    assert sixteen.mode == "I;16"
    assert np.array_equal(decode_image(png_bytes(sixteen), "16.png", "L", (16, 16), "squish")[0],
                          np.arange(256, dtype=np.uint8).reshape(16, 16))
    cat = chelsea()
    cmyk = io.BytesIO()
    cat.convert("CMYK").save(cmyk, "JPEG", quality=95)
    plain = decode_image(jpeg_bytes(cat, 95), "rgb.jpg", "RGB", (30, 45), "squish").astype(int)
    assert np.abs(decode_image(cmyk.getvalue(), "cmyk.jpg", "RGB", (30, 45), "squish") - plain).mean() < 4
    grey = decode_image(jpeg_bytes(cat, 95), "rgb.jpg", "L", (30, 45), "squish")
    assert grey.shape == (1, 30, 45)


def test_the_resize_policies_squish_crop_and_pad() -> None:
    wide = Image.new("RGB", (200, 100), (0, 0, 0))
    wide.paste((250, 250, 250), (50, 0, 150, 100))  # a white square in the middle of a wide black image
    squish, crop, pad = (decode_image(png_bytes(wide), "wide.png", "RGB", (20, 20), policy)
                         for policy in ("squish", "crop", "pad"))
    assert squish[:, 10, 0].tolist() == [0, 0, 0] and squish[:, 10, 10].tolist() == [250, 250, 250]
    assert (crop[:, :, 1:-1] >= 245).all() and (crop >= 200).all()  # the centre 100x100 (its edges filtered)
    assert (pad[:, :4, :] == 0).all() and (pad[:, 16:, :] == 0).all()  # black bars above and below
    assert (pad[:, 8:12, 8:12] >= 245).all() and (pad[:, 8:12, :3] == 0).all()


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_for_a_small_image() -> None:
    big = chelsea().resize((3600, 2400))
    content = jpeg_bytes(big)
    for size, policy, expected in (((64, 64), "squish", (450, 300)), ((64, 64), "crop", (450, 300)),
                                   ((256, 256), "squish", (450, 300)), ((512, 512), "pad", (900, 600)),
                                   ((2000, 2000), "squish", (3600, 2400))):
        img = Image.open(io.BytesIO(content))
        _draft(img, size, policy)
        img.load()
        assert img.size == expected, (size, policy)
    drafted = decode_image(content, "big.jpg", "RGB", (64, 64), "squish").astype(int)
    full = np.asarray(big.resize((64, 64), Image.Resampling.BILINEAR)).transpose(2, 0, 1).astype(int)
    assert np.abs(drafted - full).mean() < 3  # the same picture


def test_bad_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    for name in write_bad_photos(tmp_path):
        with pytest.raises(CorruptDataError, match=f"image '{name}' (cannot be read|is too large)"):
            decode_image((tmp_path / name).read_bytes(), name, "RGB", (16, 16), "squish")


def folder_config(root: Path, **fields: object) -> DataConfig:
    return DataConfig(name="imagefolder", path=root, image_size=(32, 32), data_dir=root.parent / "data", **fields)


def test_the_second_load_decodes_nothing_and_a_change_decodes_only_what_changed(tmp_path: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=6, test_per_class=2)
    cfg = folder_config(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    first = ingest(root, files, cfg, (32, 32))
    assert first.decoded == len(files) == 24 and first.summary == "decoded 24 images into the cache"
    second = ingest(root, files, cfg, (32, 32))
    assert second.decoded == 0 and second.summary == "cache hit: 24 images, none decoded"
    assert all(np.array_equal(first.pixels[p], second.pixels[p]) for p in files)

    # one photo replaced by another of the same size and mtime: its ctime changed, so it is read and decoded again
    changed, other = files[0], files[-1]
    stat = changed.stat()
    content = (png_bytes if changed.suffix == ".png" else jpeg_bytes)(Image.fromarray(255 - first.pixels[other][0]))
    changed.write_bytes(content)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    added = root / "train" / "brick" / "new.png"
    added.write_bytes(png_bytes(chelsea()))
    removed = files[1]
    removed.unlink()
    now = sorted(p for p in root.rglob("*") if p.is_file())
    third = ingest(root, now, cfg, (32, 32))
    assert third.decoded == 2 and third.summary == "cache: 22 images reused, 2 new or changed decoded"
    fresh = ingest(root, now, folder_config(root, cache=False), (32, 32))
    assert fresh.summary == "decoded 24 images (not cached)"
    assert all(np.array_equal(third.pixels[p], fresh.pixels[p]) for p in now)  # nothing stale
    assert not np.array_equal(third.pixels[changed], first.pixels[changed])
    assert ingest(root, now, cfg, (32, 32)).decoded == 0
    # another size or policy is another set of decoded images, beside the first
    assert ingest(root, now, folder_config(root, resize="crop"), (32, 32)).decoded == 24
    assert ingest(root, now, cfg, (32, 32)).decoded == 0


def cache_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "cache" / "images").rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["cut", "empty", "garbage"])
def test_a_damaged_cache_costs_a_decode_never_a_wrong_image(tmp_path: Path, damage: str) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=4, test_per_class=1)
    cfg = folder_config(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    want = ingest(root, files, cfg, (32, 32)).pixels
    for path in cache_files(cfg.data_dir):
        content = path.read_bytes()
        path.write_bytes({"cut": content[: len(content) // 2], "empty": b"", "garbage": b"\x00{" * 100}[damage])
    again = ingest(root, files, cfg, (32, 32))
    assert again.decoded == len(files) and all(np.array_equal(again.pixels[p], want[p]) for p in files)
    assert len(again.problems) == 2 and all("could not be read" in p for p in again.problems)
    assert ingest(root, files, cfg, (32, 32)).decoded == 0  # rewritten whole


def test_an_unwritable_cache_is_said_once_and_loading_goes_on(tmp_path: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=4, test_per_class=1)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the cache folder would go")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    loaded = ingest(root, files, folder_config(root), (32, 32))
    assert len(loaded.pixels) == len(files) and len(loaded.problems) == 1  # one warning, not one per file
    assert "could not be written" in loaded.problems[0] and "reads or decodes these images again" in loaded.problems[0]
    assert loaded.summary == f"decoded {len(files)} images (not cached)"


def test_bad_photos_are_skipped_counted_and_named_and_strict_stops_at_the_first(tmp_path: Path) -> None:
    from trainlab.cli import app

    root = write_texture_folder(tmp_path / "textures", train_per_class=12, test_per_class=3)
    bad = write_bad_photos(root / "train" / "grass")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={root}", "data.image_size=24",
                                 "model.arch=small", "train.epochs=1", "threads=1", "--tracker", "none"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped {len(bad)} unreadable or non-image files")
    assert "Traceback" not in result.output
    assert "decoded 45 images into the cache" in result.stdout, result.stdout
    run_dir = next(Path("runs").iterdir())
    data = json.loads((run_dir / "data.json").read_text())
    assert sorted(data["skipped_files"]) == sorted(f"train/grass/{name}" for name in bad)
    assert data["class_counts"]["test"] == {"brick": 3, "grass": 3, "gravel": 3}
    assert data["ingestion"] == "decoded 45 images into the cache"

    again = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={root}", "data.image_size=24",
                                "model.arch=small", "train.epochs=1", "threads=1", "--tracker", "none"])
    assert again.exit_code == 0 and "cache hit: 45 images, none decoded" in again.stdout, again.output
    strict = runner.invoke(app, ["train", "data.name=imagefolder", f"data.path={root}", "data.image_size=24",
                                 "data.strict=true", "train.epochs=1", "--tracker", "none", "output_dir=strict"])
    assert strict.exit_code == 2 and not Path("strict").exists()
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and "train/grass/" in lines[0] and "data.strict: false" in lines[0], strict.stderr


def test_a_bomb_sized_photo_in_a_folder_is_skipped_without_decoding(tmp_path: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=3, test_per_class=1)
    (root / "train" / "brick" / "bomb.png").write_bytes(bomb_png())
    ds = create_dataset(folder_config(root))
    assert ds.skipped == ("train/brick/bomb.png",) and len(ds.train_y) == 9


@pytest.mark.slow
def test_the_photos_preset_learns_real_textures(tmp_path: Path) -> None:
    """configs/photos.yaml as shipped, on 40 photos per class of three textures: held-out accuracy of 95% or more
    (bench/photos_preset.py measures it over seeds, with the wall time)."""
    from conftest import REPO

    from trainlab.config import load_config
    from trainlab.experiment import run_experiment

    root = write_texture_folder(tmp_path / "textures", train_per_class=40, test_per_class=30)
    # one thread: the other xdist worker trains too, and two 2-thread processes on 2 cores slow each other ~5x
    cfg = load_config(REPO / "configs" / "photos.yaml", [f"data.path={root}", "tracking.trackers=[]", "report=false",
                                                         f"data.data_dir={tmp_path / 'data'}", "threads=1"])
    outcome = run_experiment(cfg)
    assert outcome.dataset.input_shape == (3, 64, 64) and outcome.sizes["test"] == 90
    assert outcome.test.metrics["accuracy"] >= 0.95, outcome.test.metrics


def test_a_full_disk_under_the_cache_is_said_and_the_run_goes_on(tmp_path: Path, small_disk: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=6, test_per_class=2)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    filler = small_disk / "filler"
    with filler.open("wb") as fh:  # the disk full to the last block
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    cfg = DataConfig(name="imagefolder", path=root, image_size=(32, 32), data_dir=small_disk)
    loaded = ingest(root, files, cfg, (32, 32))
    assert len(loaded.pixels) == len(files)
    assert len(loaded.problems) == 1 and "No space left on device" in loaded.problems[0], loaded.problems
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p != filler]  # no half-written cache file
    filler.unlink()
    assert ingest(root, files, cfg, (32, 32)).decoded == len(files)  # room again: decoded once more, and cached
    assert ingest(root, files, cfg, (32, 32)).decoded == 0


def test_hidden_folders_are_not_classes_and_a_class_of_unreadable_files_is_refused(tmp_path: Path) -> None:
    from trainlab.errors import DataError

    root = write_texture_folder(tmp_path / "textures", train_per_class=3, test_per_class=1)
    for junk in (".ipynb_checkpoints", "__MACOSX"):
        (root / "train" / junk).mkdir()
        (root / "train" / junk / "brick_000-checkpoint.png").write_bytes(png_bytes(chelsea()))
    (root / "train" / "brick" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    ds = create_dataset(folder_config(root))
    assert ds.class_names == ("brick", "grass", "gravel") and ds.skipped == ()
    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "zero.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="class folder 'empty' of .* has no readable training image"):
        create_dataset(folder_config(root))


def test_a_killed_writes_leftovers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=2, test_per_class=1)
    cfg = folder_config(root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    ingest(root, files, cfg, (32, 32))
    folder = next((cfg.data_dir / "cache" / "images").iterdir())
    dead = folder / ".files.json.999999999.part"  # a pid no process has: a write killed with -9
    dead.write_text("half")
    files[0].write_bytes(png_bytes(chelsea()))  # something to write
    ingest(root, files, cfg, (32, 32))
    assert not dead.exists() and not list(folder.glob(".*.part"))


def test_strict_names_a_bad_file_known_to_the_cache_under_another_name(tmp_path: Path) -> None:
    root = write_texture_folder(tmp_path / "textures", train_per_class=2, test_per_class=1)
    (root / "train" / "brick" / "cut.jpg").write_bytes(jpeg_bytes(chelsea())[:2000])
    create_dataset(folder_config(root))  # the refusal is cached, under cut.jpg
    (root / "train" / "brick" / "cut.jpg").rename(root / "train" / "brick" / "renamed.jpg")
    with pytest.raises(CorruptDataError, match=r"image 'train/brick/renamed.jpg' cannot be read \(image file is "
                                               r"truncated.*data.strict: false"):
        create_dataset(folder_config(root, strict=True))


def test_only_images_on_a_plain_ground_have_a_background_polarity(tmp_path: Path) -> None:
    """`predict`'s "light background, pass --invert" note is for digits and garments, never for photos: dark
    texture photos (their borders are mostly dark) and LFW faces have none."""
    from photos import write_lfw_folder
    from sklearn.datasets import load_digits

    from trainlab.data.images import background

    digits = np.clip(load_digits().images * 16, 0, 255).astype(np.uint8)[:, None]
    assert (background(digits), background(255 - digits)) == ("dark", "light")
    for folder in (write_texture_folder(tmp_path / "textures", train_per_class=10, test_per_class=0),
                   write_lfw_folder(tmp_path / "lfw", train_per_class=50)):
        dataset = create_dataset(DataConfig(name="imagefolder", path=folder, image_size=32, data_dir=tmp_path / "d"))
        assert background(dataset.train_x) is None
