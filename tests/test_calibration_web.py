"""The Calibration page's upload (through ``streamlit.testing.v1.AppTest``): the grid's own name,
reserved bundled names, out-of-range values and the legacy split."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
HEADER = "batch_size,context_len,prefill_s,decode_step_s"
ROWS = ["1,64,0.010,0.0050", "1,512,0.030,0.0060", "4,64,0.020,0.0070", "4,512,0.080,0.0090"]
LEGACY = ["batch_size,max_seq_len,mean_latency_sec", "1,128,0.96", "1,256,2.112", "4,128,1.44", "4,256,3.072"]

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def upload(file_name: str, *lines: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/calibration.py").run()
    at.file_uploader(key="grid_upload").set_value((file_name, ("\n".join(lines) + "\n").encode(), "text/csv")).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The elements' text as a reader sees it (Markdown escapes removed)."""
    return " | ".join(re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements)


def widget(at: AppTest, label: str):
    found = [w for w in at.text_input if w.label == label]
    assert found, f"no text input {label!r}"
    return found[0]


def save_button(at: AppTest):
    found = [b for b in at.button if b.label == "Save to the store"]
    return found[0] if found else None


def stored():
    from batchlab.webapp import services

    return services.get_store()


def test_upload_keeps_the_name_in_its_metadata():
    at = upload("grid.csv", "# name: tiny-cpu-float32", HEADER, *ROWS)
    assert widget(at, "Grid name").value == "tiny-cpu-float32"  # not the file stem 'grid'
    save_button(at).click().run()
    assert "grid:tiny-cpu-float32" in texts(at.success)
    assert [g.name for g in stored().list_grids()] == ["tiny-cpu-float32"]
    assert stored().get_grid("tiny-cpu-float32").meta["name"] == "tiny-cpu-float32"


def test_upload_without_a_name_uses_the_file_stem_and_the_typed_name_wins():
    at = upload("lab-a100.csv", HEADER, *ROWS)
    assert widget(at, "Grid name").value == "lab-a100"
    widget(at, "Grid name").set_value("lab-h100").run()
    save_button(at).click().run()
    assert [g.name for g in stored().list_grids()] == ["lab-h100"]
    assert stored().get_grid("lab-h100").meta["name"] == "lab-h100"


@pytest.mark.parametrize("name, words", [
    ("qwen3-4b-sglang", "taken by a bundled grid"),
    ("runs/a.csv", "is not allowed"),
])
def test_a_reserved_or_bad_name_cannot_be_saved(name, words):
    at = upload("g.csv", HEADER, *ROWS)
    widget(at, "Grid name").set_value(name).run()
    assert not at.exception
    assert words in texts(at.error) and "Cannot save under this name" in texts(at.error)
    assert save_button(at) is None
    assert stored().list_grids() == []


@pytest.mark.parametrize("row, where", [
    ("1e19,64,0.01,0.005", "line 6, column 'batch_size': out of range: '1e19'"),
    ("4,1e300,0.01,0.005", "line 6, column 'context_len': out of range: '1e300'"),
    ("4,1024,1e308,0.005", "line 6, column 'prefill_s': out of range: '1e308'"),
])
def test_values_out_of_range_name_line_and_column(row, where):
    at = upload("g.csv", HEADER, *ROWS, row)
    assert where in texts(at.error) and "Traceback" not in texts(at.error)
    assert save_button(at) is None


def test_legacy_upload_offers_the_split():
    at = upload("old.csv", *LEGACY)
    split = widget(at, "Legacy split")
    assert split.value == "writer"
    assert "Valid grid: 4 cells" in texts(at.success)
    split.set_value("total:64").run()
    save_button(at).click().run()
    grid = stored().get_grid("old")
    assert grid.meta["legacy_split"] == "total:64"
    assert grid.table["context_len"].tolist() == [96, 160, 96, 160]  # P + G // 2 with P = 64, G = L - 64
    assert grid.table["decode_step_s"].iloc[0] == pytest.approx(0.96 / 64)


def test_legacy_upload_with_a_bad_split_is_an_error():
    at = upload("old.csv", *LEGACY)
    widget(at, "Legacy split").set_value("half").run()
    assert "legacy split 'half' is not one of" in texts(at.error)
    assert save_button(at) is None


def test_current_format_has_no_split_input():
    at = upload("g.csv", HEADER, *ROWS)
    assert not [w for w in at.text_input if w.label == "Legacy split"]
