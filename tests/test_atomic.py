"""The one atomic-write helper: the old file survives a failed write, and no temp file is left behind."""

import os

import pytest

from discl.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, temp_path


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_writer_that_raises_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "table.parquet"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_a_value_that_cannot_be_written_leaves_the_old_file(tmp_path):
    path = tmp_path / "settings.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})  # not JSON: fails before any byte is written
    assert path.read_text() == '{"a": 1}'
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("durable", [True, False])
def test_writes_replace_the_file_whole_and_make_its_folder(tmp_path, durable):
    path = tmp_path / "new" / "folder" / "notes.txt"
    atomic_write_text(path, "première", durable=durable)
    assert path.read_text(encoding="utf-8") == "première"
    atomic_write_bytes(path, b"\x00\x01", durable=durable)
    assert path.read_bytes() == b"\x00\x01"
    assert _leftovers(path.parent) == []


def test_temp_paths_sit_beside_the_target(tmp_path):
    path = tmp_path / "a.png"
    assert temp_path(path).parent == tmp_path and str(os.getpid()) in temp_path(path).name
    assert temp_path(path, unique=False) == tmp_path / ".a.png.tmp"  # predictable: a resume removes a killed writer's
