"""Reports: report.json (documented schema) + report.md, Markdown tables, PNG plots, one-page HTML."""
from .html import html_table, markdown_to_html, render_html
from .markdown import format_bytes, format_count, markdown_table, metrics_rows, render_markdown, write_report
from .plots import (mac_ratio, plot_accuracy_vs_macs, plot_before_after, plot_compression_stages, plot_layer_widths,
                    plot_speedup_vs_mac_ratio, plot_training_curve)
from .schema import (SCHEMA_VERSION, ReportFileError, atomic_write_text, compare_metrics, complete_report,
                     environment_info, read_report, to_jsonable, validate_report)

__all__ = [
    "SCHEMA_VERSION", "ReportFileError", "write_report", "read_report", "validate_report", "complete_report",
    "compare_metrics", "environment_info", "to_jsonable", "atomic_write_text",
    "markdown_table", "render_markdown", "metrics_rows", "format_count", "format_bytes",
    "plot_before_after", "plot_layer_widths", "plot_accuracy_vs_macs", "plot_speedup_vs_mac_ratio",
    "plot_training_curve", "plot_compression_stages", "mac_ratio",
    "render_html", "html_table", "markdown_to_html",
]
