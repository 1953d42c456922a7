"""The drilldown as a page a person opens: one self-contained HTML file per round of the main job.

For the window: each service's request-duration distribution over time (a heatmap of its buckets, p50,
p95, p99) with the exemplars Prometheus stored, each linking to its trace; the slowest exemplar's trace as
a waterfall across the services with the key attributes; beside each span, the RED series of its
operation from the Collector's span metrics; and the exemplar guarantee's figures. Every trace comes from
Jaeger and every figure from Prometheus (:mod:`.collect`); the page (:mod:`.page`) inlines uPlot and loads
nothing. ``python -m deploy.local.report`` makes one against any running stack.
"""

from deploy.local.report.collect import ReportData, collect
from deploy.local.report.page import ReportAssetError, render_html, write_report
from deploy.local.report.serve import ReportServer

__all__ = ["ReportAssetError", "ReportData", "ReportServer", "collect", "render_html", "write_report"]
