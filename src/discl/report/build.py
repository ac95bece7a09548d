"""Assemble the HTML report of a run directory from its tables and images."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..artefacts import model_record
from ..atomic import atomic_write_text
from ..generation.store import synthetic_digest
from ..metrics import BUCKETS
from ..rundir import CURRICULUM_LOG, TRAIN_LOG, RunDir
from ..seeding import stable_seed
from ..tables import read_table, table_meta
from . import plots
from .images import png_data_uri, thumbnail

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; font-size: 13px; }
th:first-child, td:first-child { text-align: left; }
table.spectrum td { text-align: center; vertical-align: top; font-size: 11px; padding: 2px; }
td.kept img { outline: 3px solid #2e8b57; } td.dropped img { outline: 3px solid #cd5c5c; opacity: 0.75; }
td.real img { outline: 3px solid #333; }
.missing { display: inline-block; min-height: 40px; font-size: 9px; color: #a33; background: #f4f4f4; word-break: break-all; }
.note { color: #666; font-size: 13px; } .stale { color: #a33; } .grid { display: inline-block; margin: 0 1.5em 1.5em 0; vertical-align: top; }
figure { display: inline-block; margin: 0.5em; text-align: center; font-size: 12px; }
"""


@dataclass
class ReportOptions:
    max_grids: int = 24  # spectrum grids shown; a larger run shows a stable sample
    thumb_size: int = 64
    max_examples: int = 24  # qualitative examples
    baseline: str = "real-only"
    method: str | None = None  # the DisCL method compared with the baseline; default: first other trained method


def _table(frame: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = [float_format.format(v) if isinstance(v, float) else html.escape(str(v)) for v in row]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _figure(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}">'


def _maybe(path: Path, kind: str) -> pd.DataFrame | None:
    return read_table(path, kind) if path.exists() else None


def choose_grids(hard: pd.DataFrame, limit: int) -> pd.DataFrame:
    """All hard samples, or ``limit`` of them: round-robin over classes, each class in a stable hash order."""
    if len(hard) <= limit:
        return hard
    order = hard.assign(_key=[stable_seed("report", s) for s in hard["sample_id"]]).sort_values(["label", "_key"])
    order["_rank"] = order.groupby("label").cumcount()
    return order.sort_values(["_rank", "label"]).head(limit).drop(columns=["_key", "_rank"])


def describe_model(settings: dict | None) -> str:
    """A trained model's settings in one short line: what it is and the input digests it recorded."""
    if not settings:
        return "settings not recorded"
    train = settings.get("train", {})
    c = train.get("classifier", {})
    parts = [f"task {train.get('task')}", f"model {c.get('model')}", f"loss {c.get('loss')}", f"epochs {c.get('epochs')}",
             f"batch {c.get('batch_size')}", f"lr {c.get('lr')}", f"seed {c.get('seed')}", f"levels {train.get('levels')}"]
    parts += [f"{name} {digest}" for name, digest in (settings.get("inputs") or {}).items()]
    return ", ".join(parts)


def current_models(run: RunDir, methods) -> dict[str, dict | None]:
    """The model now in train/<method>/ for each method (None: none there, or unreadable)."""
    out: dict[str, dict | None] = {}
    for method in methods:
        try:
            out[method] = model_record(run.method_dir(method))
        except (OSError, ValueError):
            out[method] = None
    return out


def provenance(run: RunDir, path: Path, what: str) -> str:
    """Which models (and settings) made the table at ``path``, when, and whether a model has been retrained or
    removed since (the table is then older than its inputs: `discl eval` makes it again). ``what``: the
    warning's subject and verb, e.g. "This table is"."""
    made = table_meta(path).get("models")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    if made is None:
        return (f"<p class='note'>{html.escape(path.name)} ({html.escape(when)}) does not record the models it was made "
                "from (written by an earlier discl): run <code>discl eval</code> to know.</p>")
    now = current_models(run, made)
    lines, stale = [], []
    for method, record in made.items():
        current = now.get(method)
        state = "current" if current is not None and current["digest"] == record["digest"] else \
            "the model has been removed since" if current is None else "retrained since: older than its model"
        if state != "current":
            stale.append(method)
        lines.append(f"<li><b>{html.escape(method)}</b>: train/{html.escape(method)} model {html.escape(record['digest'])} "
                     f"({html.escape(describe_model(record.get('settings')))}): {html.escape(state)}</li>")
    warning = (f"<p class='note stale'><b>{html.escape(what)} older than its inputs: {html.escape(', '.join(stale))} "
               f"retrained or removed after {html.escape(path.name)} was written; run <code>discl eval {html.escape(str(run.root))}</code>."
               "</b></p>") if stale else ""
    return warning + (f"<p class='note'>Made by <code>discl eval</code> at {html.escape(when)} ({html.escape(path.name)}) from:</p>"
                      f"<ul class='note'>{''.join(lines)}</ul>")


def training_provenance(run: RunDir) -> str:
    """Which model each training curve belongs to: the one saved beside its log (same folder, same run)."""
    methods = [p.parent.name for p in run.method_files(TRAIN_LOG)]
    items = []
    for method, record in current_models(run, methods).items():
        detail = f"model {record['digest']} ({describe_model(record.get('settings'))})" if record else "no saved model (training unfinished)"
        items.append(f"<li><b>{html.escape(method)}</b>: train/{html.escape(method)}/{TRAIN_LOG}, {html.escape(detail)}</li>")
    return f"<ul class='note'>{''.join(items)}</ul>" if items else ""


def metrics_section(metrics: pd.DataFrame | None) -> str:
    if metrics is None:
        return "<p class='note'>No metrics yet: run <code>discl eval</code>.</p>"
    wide = metrics.pivot_table(index="method", columns="bucket", values="accuracy", sort=False)
    frame = pd.DataFrame({"Method": wide.index})
    for bucket, title in (*((b, b.capitalize()) for b in BUCKETS), ("overall", "Overall")):
        frame[title] = [float(v) for v in wide.get(bucket, pd.Series(float("nan"), index=wide.index))]
    counts = metrics.drop_duplicates("bucket").set_index("bucket")["n_images"]
    note = ", ".join(f"{b}: {int(counts.get(b, 0))}" for b in (*BUCKETS, "overall"))
    return _table(frame) + f"<p class='note'>Top-1 accuracy (%) on the test split; test images per bucket: {note}.</p>"


WILDS_COLUMNS = (("test", "F1-macro_all", "OOD macro F1"), ("test", "acc_avg", "OOD accuracy"),
                 ("id_test", "F1-macro_all", "ID macro F1"), ("id_test", "acc_avg", "ID accuracy"))


def wilds_section(wilds: pd.DataFrame) -> str:
    """iWildCam: WILDS's own metrics (the paper's table reports OOD and ID macro F1), percent."""
    frame = pd.DataFrame({"Method": list(dict.fromkeys(wilds["method"]))})
    for split, metric, title in WILDS_COLUMNS:
        values = wilds[(wilds["split"] == split) & (wilds["metric"] == metric)].set_index("method")["value"]
        frame[title] = [100 * float(values.get(m, float("nan"))) for m in frame["Method"]]
    return _table(frame) + ("<p class='note'>WILDS evaluation (wilds_metrics.parquet): OOD = the test split "
                            "(cameras unseen in training), ID = id_test; macro F1 and accuracy in percent.</p>")


def spectrum_section(run: RunDir, hard: pd.DataFrame, synthetic: pd.DataFrame, scores: pd.DataFrame | None, opts: ReportOptions) -> str:
    chosen = choose_grids(hard, opts.max_grids)
    cells = synthetic.merge(scores[["synthetic_id", "text_sim", "image_sim", "kept", "drop_reason"]], on="synthetic_id", how="left") if scores is not None else synthetic
    levels = sorted(synthetic["image_guidance"].unique())
    parts = [
        f"<p class='note'>Showing {len(chosen)} of {len(hard)} hard samples"
        + (" (a stable sample: round-robin over classes, in hash order)" if len(chosen) < len(hard) else "")
        + ". Columns: image guidance λ from synthetic (0) to real; rows: seeds. Under each image: t = image-text and "
        "i = image-image similarity. Green: kept by the filter; red: dropped.</p>"
    ]
    by_source = dict(tuple(cells.groupby("source_id")))
    for source in chosen.itertuples(index=False):
        rows = by_source.get(source.sample_id)
        if rows is None:
            continue
        header = "".join(f"<th>λ={lv}</th>" for lv in levels) + "<th>real</th>"
        body = []
        real_cell = f"<td class='real'>{thumbnail(run.resolve(str(source.path)), opts.thumb_size, f'real {source.sample_id}')}</td>"
        for seed, seed_rows in rows.groupby("seed"):
            by_level = seed_rows.set_index("image_guidance")
            tds = []
            for level in levels:
                if level not in by_level.index:
                    tds.append("<td></td>")
                    continue
                r = by_level.loc[level]
                state, caption = "", ""
                if "kept" in r and pd.notna(r["kept"]):
                    state = "kept" if r["kept"] else "dropped"
                    caption = f"<br>t {r['text_sim']:.2f}<br>i {r['image_sim']:.2f}"
                    if not r["kept"]:
                        caption += f"<br>{html.escape(str(r['drop_reason']))}"
                image = thumbnail(run.resolve(r["path"]), opts.thumb_size, f"{source.sample_id} λ={level} seed={seed}")
                tds.append(f"<td class='{state}'>{image}{caption}</td>")
            body.append(f"<tr><th>seed {seed}</th>{''.join(tds)}{real_cell}</tr>")
        title = html.escape(f"{source.class_name} — {source.sample_id} ({source.reason}, p_true {source.p_true:.2f})")
        parts.append(f"<div class='grid'><h3>{title}</h3><table class='spectrum'><tr><th></th>{header}</tr>{''.join(body)}</table></div>")
    return "".join(parts)


def filter_summary(summary: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The rows of score_summary.parquet added up over ``by``: counts summed (one dropped_<rule> column
    per rule the score stage wrote), means weighted by the images generated."""
    rules = [c for c in summary.columns if c.startswith("dropped_")]
    frame = summary.assign(**{f"_{m}": summary[m].astype("float64") * summary["generated"] for m in ("mean_text_sim", "mean_image_sim")})
    out = frame.groupby(by, sort=True)[["generated", "kept", *rules, "_mean_text_sim", "_mean_image_sim"]].sum().reset_index()
    for mean in ("mean_text_sim", "mean_image_sim"):
        out[mean] = out.pop(f"_{mean}") / out["generated"]
    out[["generated", "kept", *rules]] = out[["generated", "kept", *rules]].astype(int)
    out.insert(out.columns.get_loc("kept") + 1, "dropped", out["generated"] - out["kept"])
    return out.drop(columns=[c for c in by if c not in ("class_name", "image_guidance")])


def summary_tables(run: RunDir, score_summary: pd.DataFrame | None, scored: str | None) -> str:
    """The score stage's summary (score_summary.parquet) per class and per level, as it wrote it."""
    if score_summary is None or table_meta(run.score_summary).get("synthetic", scored) != scored:
        return (f"<p class='note'>{html.escape(run.score_summary.name)} is missing or older than {html.escape(run.scores.name)}: "
                "run <code>discl score</code>.</p>")
    per_class = filter_summary(score_summary, ["label", "class_name"])
    per_level = filter_summary(score_summary, ["image_guidance"])
    return (_figure(plots.kept_per_class(per_class), "kept and dropped per class")
            + "<h3>Per class</h3>" + _table(per_class, "{:.3f}") + "<h3>Per image guidance</h3>" + _table(per_level, "{:.3f}"))


def qualitative_section(run: RunDir, predictions: pd.DataFrame | None, dataset: pd.DataFrame, classes: pd.DataFrame, opts: ReportOptions) -> str:
    if predictions is None:
        return "<p class='note'>No predictions yet: run <code>discl eval</code>.</p>"
    methods = list(dict.fromkeys(predictions["method"]))
    method = opts.method or next((m for m in methods if m != opts.baseline), None)
    if method is None or opts.baseline not in methods or method not in methods:
        return f"<p class='note'>Needs predictions of both {html.escape(opts.baseline)} and a DisCL method.</p>"
    wide = predictions.pivot_table(index="sample_id", columns="method", values="pred_label").astype(int)
    labels = predictions.drop_duplicates("sample_id").set_index("sample_id")["label"]
    fixed = wide.index[(wide[method] == labels[wide.index]) & (wide[opts.baseline] != labels[wide.index])]
    broken = wide.index[(wide[method] != labels[wide.index]) & (wide[opts.baseline] == labels[wide.index])]
    names = dict(zip(classes["label"], classes["class_name"]))
    paths = dataset.set_index("sample_id")["path"]
    figures = []
    for sample_id in sorted(fixed, key=lambda s: stable_seed("example", s))[: opts.max_examples]:
        figures.append(
            f"<figure>{thumbnail(run.resolve(paths[sample_id]), 96, sample_id)}"
            f"<figcaption>true: {html.escape(names[labels[sample_id]])}<br>{html.escape(method)}: {html.escape(names[wide.at[sample_id, method]])} ✓"
            f"<br>{html.escape(opts.baseline)}: {html.escape(names[wide.at[sample_id, opts.baseline]])} ✗</figcaption></figure>"
        )
    return (
        f"<p class='note'>Test images that {html.escape(method)} gets right and {html.escape(opts.baseline)} gets wrong: "
        f"{len(fixed)} (the reverse: {len(broken)}); showing {len(figures)}.</p>" + "".join(figures)
    )


def build_report(run: RunDir, out_path: Path | None = None, opts: ReportOptions | None = None) -> Path:
    """Write the report and return its path (default ``RUN/report.html``)."""
    opts = opts or ReportOptions()
    out_path = Path(out_path) if out_path else run.report
    dataset = read_table(run.dataset, "dataset")
    classes = read_table(run.classes, "classes")
    hard = _maybe(run.hard, "hard")
    synthetic = _maybe(run.synthetic, "synthetic")
    scores = _maybe(run.scores, "scores")
    score_summary = _maybe(run.score_summary, "score_summary")
    metrics = _maybe(run.metrics, "metrics")
    predictions = _maybe(run.predictions, "predictions")
    logs = [read_table(p, "train_log") for p in run.method_files(TRAIN_LOG)]
    logs_frame = pd.concat(logs, ignore_index=True) if logs else None

    results = metrics_section(metrics)
    if metrics is not None:
        results = provenance(run, run.metrics, "This table is") + results
    sections = [("Results", results)]
    wilds = _maybe(run.wilds_metrics, "wilds_metrics")
    if wilds is not None and len(wilds):
        sections.append(("WILDS metrics", provenance(run, run.wilds_metrics, "This table is") + wilds_section(wilds)))
    counts = {str(split): int(n) for split, n in dataset.groupby("split").size().items()}
    overview = pd.DataFrame(
        {"item": ["classes", *(f"{k} images" for k in sorted(counts)), "hard samples", "synthetic images", "kept by the filter"],
         "count": [len(classes), *(counts[k] for k in sorted(counts)), len(hard) if hard is not None else 0,
                   len(synthetic) if synthetic is not None else 0,
                   int(score_summary["kept"].sum()) if score_summary is not None else 0]}
    )
    sections.append(("Run", _table(overview) + _table(classes[["class_name", "train_count", "bucket"]])))
    if hard is not None and synthetic is not None and len(synthetic):
        sections.append(("Spectra of hard samples", spectrum_section(run, hard, synthetic, scores, opts)))
    if scores is not None and synthetic is not None and len(scores):
        meta = table_meta(run.scores)
        recorded = meta.get("synthetic")
        stale = recorded is not None and recorded != synthetic_digest(synthetic)
        filters = meta.get("filters")
        thresholds = _thresholds(run, filters)
        made = ", ".join(f"{k if '.' in k else 'score.' + k} {v}" for k, v in filters.items()) if filters else "filter settings not recorded"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.scores.stat().st_mtime))
        sections.append((
            "What the filter kept",
            f"<p class='note'>Made by <code>discl score</code> at {html.escape(when)} ({html.escape(run.scores.name)}, "
            f"synthetic images {html.escape(str(recorded))}): {html.escape(made)}.</p>"
            + (f"<p class='note stale'><b>{html.escape(run.scores.name)} scores other synthetic images than {html.escape(run.synthetic.name)} "
               f"(generate has remade some since): run <code>discl score</code>.</b></p>" if stale else "")
            + _figure(plots.similarity_histograms(scores, thresholds), "similarity histograms per level")
            + summary_tables(run, score_summary, recorded),
        ))
    if logs_frame is not None:
        body = _figure(plots.curriculum_timeline(logs_frame), "curriculum timeline")
        for path in run.method_files(CURRICULUM_LOG):
            curriculum = pd.read_parquet(path)
            scored = curriculum[(curriculum["class_label"] == -1) & (curriculum["level"] >= 0)] if "class_label" in curriculum else curriculum.iloc[:0]
            if len(scored) and scored["smoothed"].notna().any():
                body += f"<h3>{html.escape(path.parent.name)}: progress per level at each stage end</h3>" + _figure(
                    plots.progress_per_level(scored), "progress per level")
        trained_by = training_provenance(run)  # reads every saved model's record: once for both sections
        sections.append(("Curriculum", trained_by + body))
        sections.append(("Training", trained_by + _figure(plots.training_curves(logs_frame), "training curves")))
    examples = qualitative_section(run, predictions, dataset, classes, opts)
    if predictions is not None:
        examples = provenance(run, run.predictions, "These examples are") + examples
    sections.append(("Where DisCL helps", examples))

    nav = " · ".join(f"<a href='#s{i}'>{html.escape(t)}</a>" for i, (t, _) in enumerate(sections))
    body = "".join(f"<h2 id='s{i}'>{html.escape(t)}</h2>{b}" for i, (t, b) in enumerate(sections))
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>discl report</title>"
        f"<style>{STYLE}</style></head><body><h1>discl report</h1>"
        f"<p class='note'>{html.escape(str(run.root))} — written {time.strftime('%Y-%m-%d %H:%M')}</p><p>{nav}</p>{body}</body></html>"
    )
    return atomic_write_text(out_path, page)


def _thresholds(run: RunDir, filters: dict | None = None) -> dict[str, float]:
    """The thresholds the scores were filtered with (as recorded with them; else the run's settings)."""
    from ..config import load_config

    if filters is None:
        cfg = load_config(run.root).score
        filters = {"text_threshold": cfg.text_threshold, "image_threshold": cfg.image_threshold}
    # A filter that is off (image_threshold null, as in both recipes) draws no threshold line.
    drawn = {"text_sim": filters.get("text_threshold"), "image_sim": filters.get("image_threshold")}
    return {column: value for column, value in drawn.items() if value is not None}
