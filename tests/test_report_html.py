"""`prunekit report` writes one self-contained HTML page; headless Chromium (Debian's `chromium`) opens it and
finds the tables and the inlined plots rendered (an injected script writes what it saw into the DOM, which
--dump-dom prints). Chromium is required, not optional: `apt-get install -y chromium`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prunekit.cli import main
from prunekit.report import plot_accuracy_vs_macs, plot_speedup_vs_mac_ratio

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && /^data:image\\/png;base64,/.test(i.src); });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "PROBE tables=" + document.querySelectorAll("table").length + " rows=" +
    document.querySelectorAll("table tbody tr").length + " images=" + imgs.length + " rendered=" + ok.length +
    " widths=" + ok.map(function (i) { return i.naturalWidth; }).join(",");
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for this test and was not found: install Debian's chromium "
                "(sudo apt-get install -y chromium); `make test` does it")


def suite_folder(root: Path) -> Path:
    """A suite folder like the benchmarks write: results.json, results.md (a table, a plot) and plots."""
    folder = root / "suite"
    folder.mkdir()
    rows = [{"method": "uniform l1", "macs": 4e6, "top1": 0.81, "mac_ratio": 2.0, "speedup": 1.4},
            {"method": "srr+l1", "macs": 3.9e6, "top1": 0.83, "mac_ratio": 2.05, "speedup": 1.2}]
    plot_accuracy_vs_macs(rows, folder / "accuracy_vs_macs.png")
    plot_speedup_vs_mac_ratio(rows, folder / "speedup_vs_mac_ratio.png")
    (folder / "results.json").write_text(json.dumps({"suite": "redundancy", "command": "prunekit bench redundancy",
                                                     "results": rows}))
    (folder / "results.md").write_text("# Redundancy\n\n| method | top-1 |\n|---|---|\n| uniform l1 | 81.00 |\n"
                                       "| srr+l1 | 83.00 |\n\n![accuracy](accuracy_vs_macs.png)\n")
    return folder


def test_report_html_renders_tables_and_images_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    folder = suite_folder(tmp_path)
    assert main(["report", str(folder), "--out", str(tmp_path / "page.html")]) == 0
    page = (tmp_path / "page.html").read_text()
    # self-contained: every image inlined, nothing fetched from elsewhere
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "\n</body>"))
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", probed.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    m = re.search(r"PROBE tables=(\d+) rows=(\d+) images=(\d+) rendered=(\d+) widths=([\d,]*)", dom)
    assert m, f"the probe did not run; DOM starts: {dom[:500]!r}; stderr: {proc.stderr[-1000:]}"
    tables, rows, images, rendered = map(int, m.groups()[:4])
    widths = [int(w) for w in m.group(5).split(",") if w]
    assert tables >= 2 and rows >= 4  # results.json's table and results.md's table
    assert images == 2 and rendered == 2
    assert all(w > 100 for w in widths)
    assert "<table>" in dom and "srr+l1" in dom


def test_report_command_errors(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no report.json" in capsys.readouterr().err
