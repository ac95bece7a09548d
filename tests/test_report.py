"""The HTML report of a tiny run: it parses, every image is there, and its numbers are the tables'."""

import base64
import io
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from discl.cli import main
from discl.report.build import ReportOptions, _thresholds, build_report, choose_grids
from discl.tables import read_table, table_meta, write_table

from .conftest import tree_state


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text, self.ids, self.links = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs.get("href", ""))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    run, _ = tiny_run
    path = build_report(run, tmp_path_factory.mktemp("report") / "report.html")
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return run, path, parser, " ".join(parser.text)


def test_every_image_is_embedded_and_decodes(report):
    run, path, parser, _ = report
    synthetic = pd.read_parquet(run.synthetic)
    shown = choose_grids(pd.read_parquet(run.hard), ReportOptions().max_grids)
    cells = synthetic[synthetic.source_id.isin(shown.sample_id)]
    # Every synthetic image of the shown grids, and the real image on each of their seed rows.
    assert len(parser.images) >= len(cells) + len(shown) * synthetic["seed"].nunique()
    for attrs in parser.images:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]  # self-contained: no file or network reference
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
        assert attrs.get("alt")
    assert all(link.lstrip("#") in parser.ids for link in parser.links)


def test_numbers_equal_the_tables(report):
    run, _, _, text = report
    metrics = pd.read_parquet(run.metrics)
    for value in metrics["accuracy"].dropna():
        assert f"{value:.2f}" in text
    scores = pd.read_parquet(run.scores)
    synthetic = pd.read_parquet(run.synthetic)
    merged = scores.merge(synthetic[["synthetic_id", "class_name"]], on="synthetic_id")
    for class_name, rows in merged.groupby("class_name"):
        row_text = re.search(rf"{re.escape(class_name)} {len(rows)} {int(rows.kept.sum())} {len(rows) - int(rows.kept.sum())} ", text)
        assert row_text, class_name
    hard = pd.read_parquet(run.hard)
    assert f"Showing {min(len(hard), ReportOptions().max_grids)} of {len(hard)} hard samples" in text
    predictions = pd.read_parquet(run.predictions)
    wide = predictions.pivot_table(index="sample_id", columns="method", values="pred_label")
    labels = predictions.drop_duplicates("sample_id").set_index("sample_id")["label"].reindex(wide.index)
    fixed = int(((wide["non-adaptive"] == labels) & (wide["real-only"] != labels)).sum())
    assert f"gets wrong: {fixed} (" in text


def test_large_runs_show_a_stable_sample_of_grids(tiny_run, tmp_path):
    run, _ = tiny_run
    hard = pd.read_parquet(run.hard)
    assert len(hard) >= 2
    chosen = choose_grids(hard, 2)
    assert len(chosen) == 2 and chosen["sample_id"].tolist() == choose_grids(hard.sample(frac=1, random_state=1), 2)["sample_id"].tolist()
    path = build_report(run, tmp_path / "r.html", ReportOptions(max_grids=2))
    assert f"Showing 2 of {len(hard)} hard samples (a stable sample" in path.read_text(encoding="utf-8")


def _html_table_after(html, heading):
    """The header and the rows of cells of the first table after ``heading``."""
    section = html[html.index(heading):]
    section = section[: section.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", section)
    return re.findall(r"<th>([^<]*)</th>", rows[0]), [re.findall(r"<td>([^<]*)</td>", r) for r in rows[1:]]


def test_the_filter_tables_add_up_score_summary_parquet(tiny_run, tmp_path):
    """The report reads the score stage's summary, whatever rules it names, and recomputes nothing."""
    import shutil

    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    summary = read_table(run.score_summary, "score_summary")
    scores = pd.read_parquet(run.scores)
    assert int(summary["generated"].sum()) == len(scores) and int(summary["kept"].sum()) == int(scores["kept"].sum())
    # Numbers no scores.parquet could give, and a rule the report code has never heard of.
    summary["kept"] = summary["generated"] // 2
    summary["dropped_dark"] = range(len(summary))
    write_table(summary, run.score_summary, "score_summary", meta=table_meta(run.score_summary))
    html = build_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    rules = ["dropped_text", "dropped_image", "dropped_confident_wrong", "dropped_too_easy", "dropped_cap", "dropped_dark"]
    header, rows = _html_table_after(html, "<h3>Per class</h3>")
    assert header == ["class_name", "generated", "kept", "dropped", *rules, "mean_text_sim", "mean_image_sim"]
    expected = []
    for (_, name), group in summary.groupby(["label", "class_name"], sort=True):
        generated, kept = int(group["generated"].sum()), int(group["kept"].sum())
        means = [f"{(group[m].astype(float) * group['generated']).sum() / generated:.3f}" for m in ("mean_text_sim", "mean_image_sim")]
        expected.append([name, str(generated), str(kept), str(generated - kept), *(str(int(group[r].sum())) for r in rules), *means])
    assert rows == expected
    header, rows = _html_table_after(html, "<h3>Per image guidance</h3>")
    assert header[:4] == ["image_guidance", "generated", "kept", "dropped"] and "dropped_dark" in header
    assert [(int(r[0]), int(r[2])) for r in rows] == list(summary.groupby("image_guidance")["kept"].sum().items())
    assert f"kept by the filter</td><td>{int(summary['kept'].sum())}</td>" in html

    # A summary of other scores than scores.parquet's is not shown as theirs.
    write_table(summary, run.score_summary, "score_summary", meta={"synthetic": "other"})
    html = build_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "score_summary.parquet is missing or older than scores.parquet" in html and "<h3>Per class</h3>" not in html


def test_grids_are_chosen_round_robin_over_classes():
    # Class 0 has four hard samples, class 1 two: a sample of three still starts with one of each.
    hard = pd.DataFrame({"sample_id": [f"s{i}" for i in range(6)], "label": [0, 0, 0, 0, 1, 1]})
    chosen = choose_grids(hard, 3)
    assert chosen["label"].tolist()[:2] == [0, 1] and chosen["label"].value_counts().to_dict() == {0: 2, 1: 1}
    assert chosen["sample_id"].tolist() == choose_grids(hard.iloc[::-1], 3)["sample_id"].tolist()  # whatever the row order
    assert choose_grids(hard, 6) is hard  # no more than the limit: all of them


def test_cli_report_and_a_run_without_later_stages(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run.root), "--out", str(tmp_path / "x.html")])
    assert exit_info.value.code == 0 and (tmp_path / "x.html").exists()
    # A run with only its dataset prepared still gets a report that says what is missing.
    with pytest.raises(SystemExit):
        main(["prepare", str(tmp_path / "fresh"), "--set", "data.max_per_class=10"])
    path = build_report(type(run)(tmp_path / "fresh"))
    assert "No metrics yet" in path.read_text(encoding="utf-8")


def test_class_names_are_plain_text_and_a_missing_image_is_a_placeholder(tiny_run, tmp_path):
    """A class named like mathtext ("price $_$ tag") is drawn as written; a deleted thumbnail becomes a
    placeholder naming its path, and the report is still written."""
    import shutil

    from discl.report.plots import kept_per_class, plain
    from discl.tables import write_table

    assert plain("price $_$ tag") == r"price \$_\$ tag"
    kept_per_class(pd.DataFrame({"class_name": ["price $_$ tag", "$x"], "kept": [1, 2], "dropped": [0, 1]}))  # no mathtext error
    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    classes = pd.read_parquet(run.classes)
    classes.loc[0, "class_name"] = "price $_$ tag"
    write_table(classes, run.classes, "classes")
    synthetic = pd.read_parquet(run.synthetic)
    shown = choose_grids(pd.read_parquet(run.hard), ReportOptions().max_grids)
    victim = synthetic[synthetic.source_id.isin(shown.sample_id)].path.iloc[0]
    run.resolve(victim).unlink()
    result = CliRunner().invoke(main, ["report", str(run.root), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"missing:<br>{run.resolve(victim)}</span>" in html
    assert "price $_$ tag" in html


def test_a_garbled_table_is_refused_naming_the_file(tiny_run, tmp_path):
    import shutil

    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    scores = pd.read_parquet(run.scores)
    scores.loc[4, "image_sim"] = -3.9
    scores.to_parquet(run.scores)  # as a damaged or foreign file would be: not through discl's writer
    before = tree_state(run.root)
    result = CliRunner().invoke(main, ["report", str(run.root)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {run.scores}: image_sim = -3.9 in row 4 (synthetic_id {scores.synthetic_id[4]!r}) is outside "
                             "[-1, 1]; the file is damaged or was not written by discl: rerun the stage that writes it\n")
    assert tree_state(run.root) == before  # no report.html, nothing else


def test_scores_of_other_synthetic_images_are_flagged(tiny_run, tmp_path):
    import shutil

    from discl.tables import write_table

    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    note = "scores.parquet scores other synthetic images than synthetic.parquet"
    assert note not in build_report(run, tmp_path / "a.html").read_text(encoding="utf-8")
    synthetic = pd.read_parquet(run.synthetic)
    synthetic.loc[0, "fingerprint"] = "0123456789abcdef"  # generate remade it since scoring
    write_table(synthetic, run.synthetic, "synthetic")
    assert note in build_report(run, tmp_path / "b.html").read_text(encoding="utf-8")


def test_wilds_metrics_are_a_section_of_their_own(tiny_run, tmp_path):
    """iWildCam runs: WILDS's macro F1 and accuracy (OOD test, ID test) in percent, a row per method."""
    import shutil

    from discl.tables import write_table

    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    rows = [("real-only", "test", "F1-macro_all", 0.3125), ("real-only", "test", "acc_avg", 0.5),
            ("real-only", "id_test", "F1-macro_all", 0.25), ("real-only", "id_test", "acc_avg", 0.75),
            ("adaptive", "test", "F1-macro_all", 0.375), ("adaptive", "test", "acc_avg", 0.625)]
    write_table(pd.DataFrame(rows, columns=["method", "split", "metric", "value"]), run.root / "wilds_metrics.parquet",
                "wilds_metrics")
    html = build_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    section = html[html.index("WILDS metrics</h2>"):]
    section = section[: section.index("</table>")]
    cells = re.findall(r"<td>([^<]*)</td>", section)
    assert cells == ["real-only", "31.25", "50.00", "25.00", "75.00", "adaptive", "37.50", "62.50", "nan", "nan"]
    assert "WILDS metrics" not in build_report(tiny_run[0], tmp_path / "plain.html").read_text(encoding="utf-8")


def test_a_filter_that_is_off_draws_no_threshold_line(tiny_run, tmp_path):
    """Both recipes set score.image_threshold: null (no image-image filter); the report still draws."""
    import shutil

    import yaml

    run = type(tiny_run[0])(tmp_path / "run")
    shutil.copytree(tiny_run[0].root, run.root)
    config = yaml.safe_load(run.config.read_text())
    config["score"]["image_threshold"] = None
    run.config.write_text(yaml.safe_dump(config))
    assert _thresholds(run) == {"text_sim": config["score"]["text_threshold"]}
    assert "What the filter kept" in build_report(run, tmp_path / "r.html").read_text(encoding="utf-8")


def test_spectrum_grids_frame_no_verdict_from_scores_of_other_images(run_copy):
    """The loggers' grids show the filter's verdicts only while scores.parquet scores these images: after
    generate remade one, they are drawn as before any scoring."""
    from discl.report.grids import spectrum_grids
    from discl.tables import write_table

    run, _ = run_copy
    scored = [g.tobytes() for _, g in spectrum_grids(run)]
    scores = run.scores.read_bytes()
    run.scores.unlink()
    unscored = [g.tobytes() for _, g in spectrum_grids(run)]
    assert scored != unscored  # the verdicts show
    run.scores.write_bytes(scores)
    synthetic = pd.read_parquet(run.synthetic)
    synthetic.loc[0, "fingerprint"] = "0123456789abcdef"  # generate remade it since scoring
    write_table(synthetic, run.synthetic, "synthetic")
    assert [g.tobytes() for _, g in spectrum_grids(run)] == unscored
