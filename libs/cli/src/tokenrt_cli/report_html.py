"""`tokenrt report --html FILE`: one self-contained page (no network, no external file).

Tables are written here; the charts are drawn in the browser as inline SVG by a small
inline script from the report's JSON, embedded in the page. Each chart says it drew by
setting `data-drawn` to the number of bars (what the Chromium test checks).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from tokenrt_cli.charts import percent, usd

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.muted{color:#66727f} .cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #d8dee4;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px} table{border-collapse:collapse;margin:4px 0}
td,th{padding:3px 10px;border-bottom:1px solid #eef1f4;text-align:right}
td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.ok{color:#1a7f37}.warning{color:#9a6700}.critical{color:#bc4c00}.exceeded{color:#cf222e}
svg text{font:11px system-ui,sans-serif;fill:#1d2733}
"""

# Draws horizontal bars (category charts) and columns (the time series) from the JSON.
SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function bars(box, rows, label, value, fmt, color) {
    var h = 22, w = 560, left = 190;
    var svg = el('svg', {width: w, height: Math.max(rows.length, 1) * h + 4, role: 'img',
      class: 'chart'});
    var peak = Math.max.apply(null, rows.map(value).concat([0]));
    rows.forEach(function (r, i) {
      var len = peak > 0 ? Math.max(1, (w - left - 110) * value(r) / peak) : 0;
      svg.appendChild(el('text', {x: 0, y: i * h + 15}, label(r)));
      svg.appendChild(el('rect', {class: 'bar', x: left, y: i * h + 4, width: len, height: h - 8,
        fill: color}));
      svg.appendChild(el('text', {x: left + len + 6, y: i * h + 15}, fmt(r)));
    });
    box.appendChild(svg);
    box.setAttribute('data-drawn', String(rows.length));
  }
  function columns(box, rows) {
    var w = 900, h = 180, bottom = 20, n = Math.max(rows.length, 1), step = w / n;
    var svg = el('svg', {width: w, height: h + bottom, role: 'img', class: 'chart'});
    var peak = Math.max.apply(null, rows.map(function (r) { return r.tokens; }).concat([0]));
    rows.forEach(function (r, i) {
      var hh = peak > 0 ? Math.max(1, h * r.tokens / peak) : 0;
      var bar = el('rect', {class: 'bar', x: i * step + 1, y: h - hh, width: Math.max(1, step - 2),
        height: hh, fill: '#2da44e'});
      bar.appendChild(el('title', {}, r.bucket_start + ': ' + r.tokens + ' tokens'));
      svg.appendChild(bar);
    });
    if (rows.length) {
      svg.appendChild(el('text', {x: 0, y: h + 14}, rows[0].bucket_start.slice(0, 16)));
      svg.appendChild(el('text', {x: w - 110, y: h + 14},
        rows[rows.length - 1].bucket_start.slice(0, 16)));
    }
    box.appendChild(svg);
    box.setAttribute('data-drawn', String(rows.length));
  }
  // Bar lengths come from the numbers; every label is a string the report formatted.
  function cost(r) { return r.cost_nusd; }
  function name(r) { return r.name; }
  function dollars(r) { return r.cost_usd; }
  bars(document.getElementById('chart-project'), data.by_project, name, cost, dollars, '#0969da');
  bars(document.getElementById('chart-model'), data.by_model, name, cost, dollars, '#8250df');
  bars(document.getElementById('chart-user'), data.by_user, name, cost, dollars, '#bf3989');
  bars(document.getElementById('chart-budget'), data.budgets,
       function (r) { return r.scope; }, function (r) { return Math.min(r.utilization_bp, 10000); },
       function (r) { return r.level + ' ' + r.utilization; }, '#bc4c00');
  columns(document.getElementById('chart-series'), data.series);
})();
"""


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _spend_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["name"], f"{r['requests']:,}", f"{r['tokens']:,}", usd(r["cost_nusd"]))
            for r in rows]


def _budget_rows(budgets: list[dict[str, Any]]) -> str:
    out = []
    for b in budgets:
        used = b["used"] + b["reserved"]
        fmt = usd if b["metric"] == "cost" else (lambda v: f"{v:,}")
        cells = (b["scope"], b["name"] or b["limit_id"], f"{b['metric']}/{b['period']}",
                 b["action"], fmt(used), fmt(b["limit"]))
        out.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells)
                   + f'<td class="{escape(b["level"])}">{escape(b["level"])} '
                   f"{percent(b['utilization_bp'])}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("scope", "limit", "metric", "action",
                                              "used + held", "of", "level"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>"


def render_html(r: dict[str, Any]) -> str:
    t, c = r["total"], r["cache"]
    where = "/".join(x for x in (r["org"], r["project"]) if x) or "every organization"
    cards = [("spend", usd(t["cost_nusd"])), ("requests", f"{t['requests']:,}"),
             ("tokens", f"{t['tokens']:,}"),
             ("cache hit rate", percent(t["cache_hit_rate_bp"])),
             ("cache saved", usd(t["cache_saved_cost_nusd"])),
             ("compression saved", f"{t['compression_saved_tokens']:,} tokens"),
             ("denied / degraded", f"{t['denied_requests']} / {t['degraded_requests']}")]
    card_html = "".join(f'<div class="card"><span class="muted">{escape(k)}</span>'
                        f"<b>{escape(v)}</b></div>" for k, v in cards)
    # Inside <script>, markup must not appear: JSON may write <, > and & as \u escapes.
    data = (json.dumps(r).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))
    sections = [
        ("Spend per project", "chart-project",
         _table(("project", "requests", "tokens", "spend"),
                _spend_rows(r["by_project"]))),
        ("Spend per model", "chart-model",
         _table(("model", "requests", "tokens", "spend"),
                _spend_rows(r["by_model"]))),
        ("Spend per user (top)", "chart-user",
         _table(("user", "requests", "tokens", "spend"),
                _spend_rows(r["by_user"]))),
        ("Budget levels (current period)", "chart-budget", _budget_rows(r["budgets"])),
    ]
    grid = "".join(f'<section><h2>{escape(title)}</h2><div id="{cid}" class="chart-box">'
                   f"</div>{table}</section>" for title, cid, table in sections)
    cache_line = (f"cache service: {c['hits']:,} hits, {c['misses']:,} misses "
                  f"({percent(c['hit_rate_bp'])}), {c['saved_tokens']:,} tokens / "
                  f"{usd(c['saved_cost_nusd'])} saved, {c['entries']:,} entries held")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tokenrt report: {escape(where)}</title><style>{STYLE}</style></head>
<body>
<h1>tokenrt report: {escape(where)}</h1>
<div class="muted">last {escape(r['since'])}: {escape(r['start'][:19])} → {escape(r['end'][:19])}
UTC · generated {escape(r['generated_at'][:19])} UTC</div>
<div class="cards">{card_html}</div>
<div class="muted">{escape(cache_line)}</div>
<h2>Tokens per {escape(r['granularity'])}</h2><div id="chart-series" class="chart-box"></div>
<div class="grid">{grid}</div>
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script>
</body></html>
"""
