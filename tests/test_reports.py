"""HTML reports: run folders built here from seeded tables (docs/RUN-FOLDER.md), rendered,
then checked in the file and in headless Chromium (Debian's package, driven by Playwright)."""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Page, campaign_config, needs_chromium
from PIL import Image

from reports import RunFolderError, load_run_folder, render_campaign_report, render_comparison_report, render_report

VERDICTS = ["killed", "survived", "crashed", "timed_out", "non_viable", "equivalent"]
SCORED = ["killed", "survived", "crashed", "timed_out"]
METRICS = ["top1_agreement", "topk_overlap", "kendall_tau", "rbo", "max_abs_error", "rel_l2",
           "cosine", "latency_ratio"]
VERDICT_COLUMNS = ["mutant_id", "operator", "level", "site", "stack", "verdict", "reason", *METRICS,
                   "flipped", "build_s", "run_s", "log_tail", "unstable"]
LATENCY_FLAG = "slower than tvm:cpu:O2 (1.40x, p=0.003)"
XSS_MODEL = "<script>alert(1)</script>"
XSS_OPERATOR = "<img src=x onerror=alert(2)>"
XSS_IMAGE = '"><svg onload=alert(3)>.png'
LABELS = ["cat", "dog", "ship", "truck", "frog", "horse", "bird", "deer", "plane", "car"]


# ---------------------------------------------------------------- run folders

def _thumb(rng) -> str:
    pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _images(rng, names) -> list[dict]:
    return [{"name": n, "label": LABELS[i % len(LABELS)], "thumbnail": _thumb(rng)} for i, n in enumerate(names)]


def _top5(rng) -> list:
    labels = rng.choice(LABELS, 5, replace=False)
    scores = np.sort(rng.random(5))[::-1]
    return [[str(l), round(float(s), 4)] for l, s in zip(labels, scores)]


def make_campaign(folder: Path, *, seed=1, n_mutants=24, stacks=("llvm-O3", "llvm-O0", "cuda"),
                  operators=(("swap_add_sub", "graph"), ("drop_relu", "graph"),
                             ("loop_off_by_one", "tensor"), (XSS_OPERATOR, "pass")),
                  model=XSS_MODEL, image_names=("cat_01.png", XSS_IMAGE, "dog_07.png", "ship_3.png"),
                  diff_lines=12, unstable=False) -> Path:
    """A campaign folder with exactly the files and columns of docs/RUN-FOLDER.md; with
    ``unstable``, as a run with ``repeats = 2`` writes it (some builds flagged unstable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = _images(rng, image_names)
    mutants, rows, per_image = [], [], []
    for i in range(n_mutants):
        op, level = operators[i % len(operators)]
        mid = f"{op}#{i}-{i * 7919 % 65536:04x}"
        diff = "\n".join(["--- original", "+++ mutant", f"@@ -1,{diff_lines} +1,{diff_lines} @@"]
                         + [f" lv{k} = R.add(lv{k - 1}, c{k})" for k in range(diff_lines - 2)]
                         + ["-lv_out = R.add(a, b)", "+lv_out = R.subtract(a, b)"])
        mutants.append({"id": mid, "operator": op, "level": level, "site": str(i), "status": "ok",
                        "reason": "", "hash": f"{i:040x}", "diff": diff})
        base = rng.choice(VERDICTS, p=[0.45, 0.25, 0.1, 0.05, 0.1, 0.05])
        for stack in stacks:
            verdict = base if rng.random() > 0.15 or base in ("non_viable", "equivalent") \
                else rng.choice(["killed", "survived"])
            row = {c: None for c in VERDICT_COLUMNS}
            row.update(mutant_id=mid, operator=op, level=level, site=str(i), stack=stack, verdict=verdict,
                       reason="", flipped=0, log_tail="")
            if verdict in ("killed", "survived"):
                row.update({m: round(float(rng.random()), 4) for m in METRICS})
                row.update(build_s=round(float(rng.uniform(1, 9)), 2), run_s=round(float(rng.uniform(0, 2)), 2))
                flips = 0
                for img in images:
                    flipped = verdict == "killed" and bool(rng.random() < 0.5)
                    flips += flipped
                    per_image.append({"mutant_id": mid, "stack": stack, "image": img["name"],
                                      "original_top5": json.dumps(_top5(rng)),
                                      "mutant_top5": json.dumps(_top5(rng)), "flipped": flipped})
                row["flipped"] = flips
                if unstable:
                    row["unstable"] = int(rng.random() < 0.3)
            elif verdict in ("crashed", "timed_out"):
                row.update(build_s=1.5, reason="signal 11", log_tail="line 1\nline 2\nSegmentation fault")
            rows.append(row)
    verdicts = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    verdicts.to_csv(folder / "verdicts.csv", index=False)
    pd.DataFrame(per_image, columns=["mutant_id", "stack", "image", "original_top5", "mutant_top5", "flipped"]
                 ).to_csv(folder / "per_image.csv", index=False)
    score_rows = []
    for group, key in (("all", None), ("operator", "operator"), ("level", "level")):
        for keys, g in verdicts.groupby(["stack"] + ([key] if key else [])):
            c = g["verdict"].value_counts()
            r = {"stack": keys[0], "group": group, "key": keys[1] if key else "all",
                 **{v: int(c.get(v, 0)) for v in VERDICTS}}
            denom = sum(r[v] for v in SCORED)
            r["score"] = round(100 * r["killed"] / denom, 2) if denom else None
            r["unstable"] = int((g["unstable"] == 1).sum()) if unstable else None
            score_rows.append(r)
    pd.DataFrame(score_rows, columns=["stack", "group", "key", *VERDICTS, "score", "unstable"]).to_csv(
        folder / "scores.csv", index=False)
    wide = verdicts.pivot(index="mutant_id", columns="stack", values="verdict")[list(stacks)]
    info = verdicts.drop_duplicates("mutant_id").set_index("mutant_id")[["operator", "level", "site"]]
    table = info.join(wide[wide.nunique(axis=1) > 1], how="inner")
    flagged = verdicts[verdicts["unstable"] == 1].groupby("mutant_id")["stack"].agg(",".join)
    table["unstable_on"] = flagged.reindex(table.index).fillna("")
    table.reset_index().to_csv(folder / "discrepancies.csv", index=False)
    (folder / "mutants.json").write_text(json.dumps(mutants))
    (folder / "images.json").write_text(json.dumps(images))
    (folder / "run.json").write_text(json.dumps({
        "kind": "campaign", "model": model, "images": "test-images", "image_count": len(images),
        "stacks": list(stacks), "started": "2025-01-02T03:04:05+00:00",
        "finished": "2025-01-02T03:14:05+00:00", "duration_s": 600.0, "mutatenn_version": "0.1.0",
        "per_image_cap": len(images), "config": {"model": model}, "repeats": 2 if unstable else 1,
        "unstable_originals": ["cuda"] if unstable else [],
    }))
    return folder


def make_comparison(folder: Path, *, seed=2, variants=("torch", "tvm-O0", "tvm-O3", "ort"),
                    model=XSS_MODEL, image_names=("a.png", XSS_IMAGE, "c.png", "d.png", "e.png")) -> Path:
    """A comparison folder with exactly the files and columns of docs/RUN-FOLDER.md."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = _images(rng, image_names)
    baseline = variants[0]
    top1 = {v: [img["label"] if (v == baseline or k % 2 == 0 or v != "tvm-O3") else "car"
                for k, img in enumerate(images)] for v in variants}

    def metrics():
        return {m: round(float(rng.uniform(0.5, 1.0)), 4) for m in METRICS}

    comp = []
    for v in variants[1:]:
        med = float(rng.uniform(5, 20))
        comp.append({"variant": v, "baseline": baseline, **metrics(), "latency_ms_median": round(med, 3),
                     "latency_ms_p10": round(med * 0.9, 3), "latency_ms_p90": round(med * 1.3, 3),
                     "latency_flag": LATENCY_FLAG if v == variants[-1] else "", "accuracy": None})
    cols = ["variant", "baseline", *METRICS[:-1], "latency_ms_median", "latency_ms_p10", "latency_ms_p90",
            "latency_ratio", "latency_flag", "accuracy"]
    comp_df = pd.DataFrame(comp)[cols]
    comp_df.to_csv(folder / "comparison.csv", index=False)
    (folder / "comparison.json").write_text(comp_df.to_json(orient="records"))
    pd.DataFrame([{"variant_a": a, "variant_b": b, **metrics()} for a in variants for b in variants if a != b],
                 columns=["variant_a", "variant_b", *METRICS]).to_csv(folder / "pairwise.csv", index=False)
    rows = [{"image": img["name"], "label": img["label"], "variant": v, "top1": top1[v][k],
             "top1_score": 0.9, "top5": json.dumps(_top5(rng)),
             "agrees_with_baseline": top1[v][k] == top1[baseline][k]}
            for k, img in enumerate(images) for v in variants]
    per_image = pd.DataFrame(rows)
    per_image.to_csv(folder / "per_image.csv", index=False)
    (folder / "per_image.json").write_text(per_image.to_json(orient="records"))
    (folder / "images.json").write_text(json.dumps(images))
    (folder / "run.json").write_text(json.dumps({
        "kind": "comparison", "model": model, "images": "test-images", "image_count": len(images),
        "baseline": baseline, "variants": list(variants[1:]), "started": "2025-01-02T03:04:05+00:00",
        "finished": "2025-01-02T03:05:05+00:00", "duration_s": 60.0, "mutatenn_version": "0.1.0",
    }))
    return folder


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    folder = make_campaign(tmp_path_factory.mktemp("campaign"))
    render_report(folder)
    return folder


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    folder = make_comparison(tmp_path_factory.mktemp("comparison"))
    render_report(folder)
    return folder


# ---------------------------------------------------------------- file checks

def test_load_run_folder_reads_every_table(campaign):
    run = load_run_folder(campaign)
    verdicts = pd.read_csv(campaign / "verdicts.csv")
    assert run.kind == "campaign"
    assert len(run.verdicts) == len(verdicts) == 24 * 3
    assert len(run.mutants) == 24 and len(run.images) == 4
    assert len(run.per_image) == len(pd.read_csv(campaign / "per_image.csv"))
    assert set(run.scores["group"]) == {"all", "operator", "level"}
    assert XSS_OPERATOR in set(run.verdicts["operator"])


def test_render_report_is_atomic_and_self_contained(campaign):
    out = campaign / "report.html"
    assert out.is_file() and not list(campaign.glob("*.tmp")) and not list(campaign.glob(".report*"))
    html = out.read_text()
    assert "http://" not in html and "https://" not in html  # no CDN, fonts or remote images
    assert "<script src" not in html and "<link" not in html
    assert html.count("data:image/png;base64,") == 4  # each thumbnail embedded once


def test_untrusted_names_are_escaped_in_the_file(campaign, comparison):
    for folder in (campaign, comparison):
        html = (folder / "report.html").read_text()
        assert XSS_MODEL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<svg onload" not in html and "&lt;svg onload=alert(3)&gt;" in html
    html = (campaign / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html


def test_a_thumbnail_that_is_not_a_data_uri_is_dropped(tmp_path):
    folder = make_campaign(tmp_path / "run", n_mutants=4)
    images = json.loads((folder / "images.json").read_text())
    images[0]["thumbnail"] = 'data:image/png;base64,AAAA");}</style><script>alert(9)</script>'
    (folder / "images.json").write_text(json.dumps(images))
    html = render_report(folder).read_text()
    assert "alert(9)" not in html and html.count("data:image/png;base64,") == 3


def test_optional_files_may_be_absent(tmp_path):
    folder = make_campaign(tmp_path / "run", n_mutants=12)
    expected = pd.read_csv(folder / "scores.csv")
    for name in ("per_image.csv", "discrepancies.csv", "scores.csv", "images.json"):
        (folder / name).unlink()
    html = render_report(folder).read_text()
    for r in expected[expected["group"] == "all"].itertuples():
        assert f'data-stack="{r.stack}" data-score="{r.score:.2f}"' in html  # recomputed from verdicts


def test_comparison_json_twins_are_read_when_csv_is_absent(tmp_path):
    folder = make_comparison(tmp_path / "run")
    (folder / "comparison.csv").unlink()
    (folder / "per_image.csv").unlink()
    run = load_run_folder(folder)
    assert len(run.comparison) == 3 and len(run.per_image) == 5 * 4
    assert run.per_image["agrees_with_baseline"].map(bool).sum() < len(run.per_image)
    render_comparison_report(run, tmp_path / "out" / "report.html")
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_caps_cut_diffs_and_are_stated(tmp_path):
    folder = make_campaign(tmp_path / "run", n_mutants=6, diff_lines=150)
    html = render_report(folder).read_text()
    assert "IR diffs cut at 60 lines" in html
    assert re.search(r"… \d+ more lines not shown", html)


def test_bad_run_folders_give_one_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="run.json missing"):
        load_run_folder(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(RunFolderError, match="unknown kind"):
        render_report(tmp_path)


def test_500_mutants_on_3_stacks_render_fast_and_small(tmp_path):
    from reports.sample import write_sample_campaign
    folder = write_sample_campaign(tmp_path / "big", n_mutants=500, n_images=32, seed=3)
    run = load_run_folder(folder)
    start = time.perf_counter()
    out = render_campaign_report(run, folder / "report.html")
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"render took {elapsed:.1f} s"
    assert out.stat().st_size < 10 * 1024 * 1024
    assert out.read_text().count('<tr data-verdict=') == 1500


# ---------------------------------------------------------------- browser checks

def _check_screenshot(page, path: Path):
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    img = Image.open(path).convert("RGB")
    assert img.width == 1280 and img.height > 900
    assert len(img.getcolors(maxcolors=1 << 20) or []) > 100  # charts and text, not a blank page


@needs_chromium
def test_campaign_page_in_chromium(browser, campaign, tmp_path):
    p = Page(browser, campaign / "report.html")
    page = p.page
    verdicts = pd.read_csv(campaign / "verdicts.csv")
    stacks = ["llvm-O3", "llvm-O0", "cuda"]
    operators = verdicts["operator"].unique()
    assert page.locator(".score-bar").count() == len(stacks)
    for s in stacks:
        assert page.locator(f'.score-bar[data-stack="{s}"]').count() == 1
    assert page.locator("#operators .heat-cell").count() == len(operators) * len(stacks)
    for s in stacks:
        counts = verdicts[verdicts["stack"] == s]["verdict"].value_counts()
        for v in VERDICTS:
            cell = page.locator(f'.verdict-count[data-stack="{s}"][data-verdict="{v}"]')
            assert cell.inner_text() == str(int(counts.get(v, 0)))
    assert p.visible_rows().count() == len(verdicts)
    assert page.locator("#row-count").inner_text() == f"Showing {len(verdicts)} of {len(verdicts)} rows"
    assert page.locator("details.mutant").count() == 24
    assert page.locator("#discrepancies .ops").count() >= 1
    _check_screenshot(page, tmp_path / "campaign.png")
    p.check_clean()


@needs_chromium
def test_unstable_builds_are_marked_and_filterable(browser, tmp_path):
    folder = make_campaign(tmp_path / "unstable", unstable=True, seed=4)
    render_report(folder)
    verdicts = pd.read_csv(folder / "verdicts.csv")
    flagged = verdicts[verdicts["unstable"] == 1]
    stable = verdicts[verdicts["unstable"] == 0]
    assert len(flagged) > 0 and len(stable) > 0
    p = Page(browser, folder / "report.html")
    page = p.page
    assert page.locator("#mutant-table .tag.unstable").count() == len(flagged)
    for s in ("llvm-O3", "llvm-O0", "cuda"):
        cell = page.locator(f'.unstable-count[data-stack="{s}"]')
        assert cell.inner_text() == str(int((flagged["stack"] == s).sum()))
    assert "cuda" in page.locator("#unstable-originals").inner_text()
    page.select_option("#filter-unstable", "yes")
    assert p.visible_rows().count() == len(flagged)
    assert page.locator("#mutant-table tbody tr:visible .tag.unstable").count() == len(flagged)
    page.select_option("#filter-unstable", "no")
    assert p.visible_rows().count() == len(stable)
    assert page.locator("#mutant-table tbody tr:visible .tag.unstable").count() == 0
    # A discrepancy on a stack where the mutant is unstable carries the mark.
    discrepancies = pd.read_csv(folder / "discrepancies.csv", keep_default_na=False)
    marked = int((discrepancies["unstable_on"] != "").sum())
    assert page.locator("#discrepancies .tag.unstable").count() == marked
    p.check_clean()


def test_a_run_without_repeats_shows_no_stability_column(campaign):
    html = (campaign / "report.html").read_text()
    assert "filter-unstable" not in html and "unstable-count" not in html
    assert "1 (stability not measured)" in html


def _column(p: Page, index: int, numeric: bool):
    cells = p.page.locator(f"#mutant-table tbody tr:visible td:nth-child({index})")
    if numeric:
        return [float(x) if x else float("nan") for x in cells.evaluate_all("els => els.map(e => e.dataset.sort)")]
    return [t.strip().lower() for t in cells.all_inner_texts()]


@needs_chromium
def test_campaign_table_sorts_and_filters(browser, campaign):
    p = Page(browser, campaign / "report.html")
    page = p.page
    verdicts = pd.read_csv(campaign / "verdicts.csv")
    headers = page.locator("#mutant-table thead th")
    names = headers.all_inner_texts()
    flipped_col = [n.strip() for n in names].index("Flipped") + 1
    operator_col = [n.strip() for n in names].index("Operator") + 1

    headers.nth(flipped_col - 1).click()
    values = [v for v in _column(p, flipped_col, True) if v == v]
    assert values == sorted(values) and values[0] < values[-1]
    headers.nth(flipped_col - 1).click()
    values = [v for v in _column(p, flipped_col, True) if v == v]
    assert values == sorted(values, reverse=True)
    headers.nth(operator_col - 1).click()
    ops = _column(p, operator_col, False)
    assert ops == sorted(ops)

    page.fill("#filter-text", "drop_relu")
    assert p.visible_rows().count() == int((verdicts["operator"] == "drop_relu").sum())
    page.fill("#filter-text", "")
    page.select_option("#filter-verdict", "survived")
    assert p.visible_rows().count() == int((verdicts["verdict"] == "survived").sum())
    assert set(_column(p, 6, False)) == {"survived"}
    page.select_option("#filter-stack", "cuda")
    expected = int(((verdicts["verdict"] == "survived") & (verdicts["stack"] == "cuda")).sum())
    assert p.visible_rows().count() == expected
    assert page.locator("#row-count").inner_text() == f"Showing {expected} of {len(verdicts)} rows"
    page.select_option("#filter-verdict", "")
    page.select_option("#filter-stack", "")
    assert p.visible_rows().count() == len(verdicts)

    # A mutant's link opens its collapsed detail section.
    link = p.visible_rows().first.locator("td.id a")
    target = link.get_attribute("href")[1:]
    assert not page.locator(f"#{target}").evaluate("e => e.open")
    link.click()
    assert page.locator(f"#{target}").evaluate("e => e.open")
    assert page.locator(f"#{target} .body").is_visible()
    p.check_clean()


@needs_chromium
def test_untrusted_names_show_as_text_in_chromium(browser, campaign, comparison):
    for folder in (campaign, comparison):
        p = Page(browser, folder / "report.html")
        page = p.page
        page.wait_for_timeout(200)
        assert page.locator("h1").inner_text().endswith(XSS_MODEL)
        assert page.get_by_text(XSS_MODEL, exact=True).first.is_visible()
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("svg[onload]").count() == 0
        p.check_clean()
    p = Page(browser, campaign / "report.html")
    cell = p.page.locator("#mutant-table tbody td:nth-child(2)", has_text=XSS_OPERATOR).first
    assert cell.is_visible() and cell.inner_text() == XSS_OPERATOR
    detail = p.page.locator("details.mutant:has(.img-card)").first
    detail.locator("summary").click()
    name = detail.locator(".img-card .name", has_text=XSS_IMAGE).first
    assert name.is_visible() and name.inner_text() == XSS_IMAGE
    p.check_clean()


@needs_chromium
def test_comparison_page_in_chromium(browser, comparison, tmp_path):
    p = Page(browser, comparison / "report.html")
    page = p.page
    n = 4
    assert page.locator(".pairwise").count() == len(METRICS)
    assert page.locator('.pairwise[data-metric="kendall_tau"] .heat-cell').count() == n * n
    assert page.locator(".latency-row").count() == n - 1
    flagged = pd.read_csv(comparison / "comparison.csv", keep_default_na=False)
    flagged = flagged[flagged["latency_flag"] != ""]
    assert len(flagged) == 1
    items = page.locator(".latency-flags li")
    assert items.count() == 1 and items.first.get_attribute("data-variant") == flagged["variant"].iloc[0]
    assert LATENCY_FLAG in items.first.inner_text() and items.first.is_visible()
    # tvm-O3 disagrees with the baseline on the odd images (two of five).
    rows = page.locator("#disagreement-table tbody tr")
    assert rows.count() == 2
    assert XSS_IMAGE in rows.all_inner_texts()[0]
    assert page.locator("#disagreement-table td.disagree").count() == 2
    assert page.locator("#disagreement-table .thumb").count() == 2
    assert p.visible_rows("#comparison-table").count() == n - 1
    header = page.locator("#comparison-table thead th", has_text="Median ms")
    column = [t.strip() for t in page.locator("#comparison-table thead th").all_inner_texts()].index("Median ms") + 1
    header.click()
    medians = [float(x) for x in page.locator(f"#comparison-table tbody td:nth-child({column})").evaluate_all(
        "els => els.map(e => e.dataset.sort)")]
    expected = pd.read_csv(comparison / "comparison.csv")["latency_ms_median"].tolist()
    assert medians == sorted(medians) == sorted(expected)
    _check_screenshot(page, tmp_path / "comparison.png")
    p.check_clean()


@needs_chromium
def test_screenshot_script(campaign, tmp_path):
    # A separate process: one thread cannot hold two Playwright sync sessions.
    out = tmp_path / "shot.png"
    subprocess.run([sys.executable, "-m", "reports.screenshot", str(campaign / "report.html"), str(out),
                    "--viewport"], check=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    img = Image.open(out)
    assert img.size == (1280, 900) and len(img.convert("RGB").getcolors(1 << 20) or []) > 100


# ---------------------------------------------------------------- a real campaign's report

REAL_CAMPAIGN = {"images": "digits:20", "select": {"sample": 2, "seed": 3},
                 "operators": {"insert_negate_after": "default", "tir_store_add1": "default",
                               "pass_opt_level": "default"},
                 "stacks": [{"name": "cpu-O0", "target": "cpu", "opt_level": 0},
                            {"name": "generic-O2", "target": "cpu-generic", "opt_level": 2, "schedule": "none"}],
                 "criterion": "top1_agreement < 1.0", "run": {"timeout": 300, "per_image_cap": 5}}
REAL_STACKS = ["cpu-O0", "generic-O2"]


@pytest.fixture(scope="module")
def real_campaign(tmp_path_factory) -> Path:
    """A real campaign on the bundled digits CNN (graph, tir and pass mutants; two CPU
    stacks), run in this process as `mutatenn run` would; its own report.html."""
    from mutatenn.cli import main

    folder = tmp_path_factory.mktemp("real")
    config = campaign_config(folder / "campaign.toml", **REAL_CAMPAIGN)
    out = folder / "run"
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    assert (out / "report.html").is_file()
    return out


def _table_rows(p: Page, visible_only: bool = False) -> list[dict]:
    """The mutant table as a user reads it: one dict per row, from the cells' text."""
    selector = "#mutant-table tbody tr" + (":visible" if visible_only else "")
    return p.page.locator(selector).evaluate_all(
        """rows => rows.map(r => ({id: r.cells[0].innerText.trim(), operator: r.cells[1].innerText.trim(),
                                  level: r.cells[2].innerText.trim(), stack: r.cells[4].innerText.trim(),
                                  verdict: r.cells[5].innerText.trim(), attr: r.dataset.verdict,
                                  attr_stack: r.dataset.stack}))""")


@needs_chromium
def test_real_campaign_report_shows_the_run_folder(browser, real_campaign, tmp_path):
    out = real_campaign
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    mutants = json.loads((out / "mutants.json").read_text())
    run = json.loads((out / "run.json").read_text())
    stacks = [s["name"] if isinstance(s, dict) else s for s in run["stacks"]]
    assert stacks == REAL_STACKS
    levels = sorted({m["level"] for m in mutants})
    assert levels == ["graph", "pass", "tir"]
    # The run judged something every way the filters below need.
    assert {"killed", "survived", "equivalent"} <= set(verdicts["verdict"])
    expected = {(r.mutant_id, r.stack): r.verdict for r in verdicts.itertuples()}
    assert len(expected) == len(verdicts) == len(mutants) * len(stacks)

    p = Page(browser, out / "report.html")
    page = p.page

    # The real stack and level names, as the user sees them.
    overview = page.locator("#overview").inner_text()
    assert all(s in overview for s in stacks) and f"({run['image_count']} images)" in overview
    # Each stack's schedule, and what the speed-ups did, as run.json and builds.csv record them.
    assert "cpu-O0: cpu O0, schedule default" in overview and "generic-O2: cpu-generic O2, schedule none" in overview
    builds = pd.read_csv(out / "builds.csv")
    reused = int(builds["kernels_reused"].sum())
    assert reused > 0 and run["build_summary"]["kernels_reused"] == reused
    assert f"{reused} kernels linked from the original's library" in overview and "fast kill off" in overview
    assert page.locator("#filter-stack option").all_inner_texts() == ["All stacks", *stacks]

    # Per-stack score: the bar and the counts table say what scores.csv says.
    overall = scores[scores["group"] == "all"].set_index("stack")
    assert list(overall.index) == stacks
    count_rows = page.locator("#scores table.verdict-counts tbody tr")
    assert count_rows.count() == len(stacks)
    for n, stack in enumerate(stacks):
        score = float(overall.loc[stack, "score"])
        bar = page.locator(f'.score-bar[data-stack="{stack}"]')
        assert bar.count() == 1
        assert bar.get_attribute("data-score") == f"{score:.2f}"
        assert bar.locator("text").all_text_contents() == [stack, f"{score:.1f}%"]  # SVG: label, value
        cells = count_rows.nth(n).locator("td").all_inner_texts()
        assert cells[0] == stack and cells[-1] == f"{score:.1f}%"
        for v in VERDICTS:
            shown = page.locator(f'.verdict-count[data-stack="{stack}"][data-verdict="{v}"]').inner_text()
            assert int(shown) == int(overall.loc[stack, v]) == int(((verdicts["stack"] == stack)
                                                                    & (verdicts["verdict"] == v)).sum()), (stack, v)

    # Operator x stack heat map: one cell per operator and stack, its score from scores.csv.
    per_op = scores[scores["group"] == "operator"]
    assert page.locator("#operators .heat-cell").count() == len(per_op) == len({m["operator"] for m in mutants}) * 2
    for r in per_op.itertuples():
        cell = page.locator(f'#operators .heat-cell[data-row="{r.key}"][data-col="{r.stack}"]')
        text = "—" if r.score == "" else f"{float(r.score):.1f}%"
        assert cell.count() == 1 and cell.locator("text").text_content() == text, (r.key, r.stack)

    # The mutant table: one row per mutant of mutants.json and stack, with its verdict.
    rows = _table_rows(p)
    assert len(rows) == len(expected)
    assert {(r["id"], r["stack"]) for r in rows} == set(expected)
    by_id = {m["id"]: m for m in mutants}
    for r in rows:
        assert r["verdict"] == r["attr"] == expected[(r["id"], r["stack"])], r
        assert r["attr_stack"] == r["stack"]
        assert (r["operator"], r["level"]) == (by_id[r["id"]]["operator"], by_id[r["id"]]["level"])
    assert {r["level"] for r in rows} == set(levels)
    total = len(rows)
    assert page.locator("#row-count").inner_text() == f"Showing {total} of {total} rows"

    # Filters on the real verdicts, stacks and operators.
    for verdict in VERDICTS:
        page.select_option("#filter-verdict", verdict)
        want = {k for k, v in expected.items() if v == verdict}
        shown = _table_rows(p, visible_only=True)
        assert {(r["id"], r["stack"]) for r in shown} == want and len(shown) == len(want), verdict
        assert page.locator("#row-count").inner_text() == f"Showing {len(want)} of {total} rows"
        for stack in stacks:
            page.select_option("#filter-stack", stack)
            both = {k for k in want if k[1] == stack}
            assert {(r["id"], r["stack"]) for r in _table_rows(p, visible_only=True)} == both, (verdict, stack)
        page.select_option("#filter-stack", "")
    page.select_option("#filter-verdict", "")
    for operator in sorted({m["operator"] for m in mutants}):
        page.fill("#filter-text", operator)
        want = {k for k in expected if by_id[k[0]]["operator"] == operator}
        assert {(r["id"], r["stack"]) for r in _table_rows(p, visible_only=True)} == want, operator
    page.fill("#filter-text", "")
    assert p.visible_rows().count() == total

    # One detail section per mutant, with its level, opened from its row.
    details = page.locator("details.mutant")
    assert details.count() == len(mutants)
    assert [t.strip() for t in page.locator("details.mutant summary .id").all_inner_texts()] == [m["id"] for m in mutants]
    killed = next(k for k, v in expected.items() if v == "killed")
    link = page.locator("#mutant-table tbody tr", has=page.locator(f'td.id a:text-is("{killed[0]}")')).first
    target = link.locator("td.id a").get_attribute("href")[1:]
    link.locator("td.id a").click()
    section = page.locator(f"#{target}")
    assert section.evaluate("e => e.open") and section.locator(".body").is_visible()
    assert by_id[killed[0]]["level"] in section.locator("summary .meta").inner_text()
    _check_screenshot(page, tmp_path / "real.png")
    p.check_clean()


@needs_chromium
def test_a_killed_mutants_next_steps_run_as_printed(browser, real_campaign, tmp_path):
    """The report's "Next steps" of a killed mutant are command lines that work as copied."""
    import shlex

    from mutatenn.cli import main

    verdicts = pd.read_csv(real_campaign / "verdicts.csv", keep_default_na=False)
    killed = verdicts[(verdicts["verdict"] == "killed") & (verdicts["level"] == "graph")].iloc[0]
    p = Page(browser, real_campaign / "report.html")
    details = p.page.locator("details.mutant", has=p.page.locator(f'summary .id:text-is("{killed.mutant_id}")'))
    details.locator("summary").click()
    lines = details.locator("pre.commands").inner_text().splitlines()
    wanted = [f"mutatenn repro {real_campaign} {shlex.quote(killed.mutant_id)} --stack {killed.stack}",
              f"mutatenn localize {real_campaign} --mutant {shlex.quote(killed.mutant_id)} --stack {killed.stack}"]
    assert all(w in lines for w in wanted), lines
    args = shlex.split(wanted[1])[1:] + ["--no-curve", "--out", str(tmp_path / "loc")]
    assert main(args) == 0
    assert json.loads((tmp_path / "loc" / "divergence.json").read_text())["campaign"]["mutant"] == killed.mutant_id
    p.check_clean()
