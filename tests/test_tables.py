import pandas as pd
import pytest

from discl.tables import TableError, read_table, write_table


def test_write_checks_columns_and_leaves_no_temp_file(tmp_path):
    frame = pd.DataFrame({"path": ["a.png"], "reason": ["empty file (0 bytes)"]})
    write_table(frame, tmp_path / "skipped.parquet", "skipped")
    assert read_table(tmp_path / "skipped.parquet", "skipped").equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["skipped.parquet"]
    with pytest.raises(TableError, match=r"lacks columns \['reason'\]"):
        write_table(frame[["path"]], tmp_path / "x.parquet", "skipped")


def test_read_names_the_missing_stage_and_wrong_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage that writes the hard table"):
        read_table(tmp_path / "hard.parquet", "hard")
    write_table(pd.DataFrame({"path": ["a"], "reason": ["b"]}), tmp_path / "s.parquet", "skipped")
    with pytest.raises(TableError, match="is not a hard table"):
        read_table(tmp_path / "s.parquet", "hard")
