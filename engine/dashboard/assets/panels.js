// The run page below the price chart: equity against buy-and-hold, drawdown and daily returns
// (downsampled on the server), and the fills, orders, rejections, feed gaps and forecasts
// tables. Ledger text goes in as textContent, never as markup.
(function () {
  "use strict";
  const runId = document.getElementById("chart").dataset.run;
  const token = new URLSearchParams(location.search).get("token");

  async function api(path, params) {
    const q = new URLSearchParams(params || {});
    if (token) q.set("token", token);
    const resp = await fetch(`/api/runs/${runId}/${path}?${q}`);
    if (!resp.ok) throw new Error(`${path}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  }

  const points = (s) => s.t.map((t, i) => ({ time: t / 1000, value: s.v[i] })).filter((p) => p.value !== null);
  const chartIn = (id) => LightweightCharts.createChart(document.getElementById(id),
    { autoSize: true, timeScale: { timeVisible: true } });

  async function drawCurves() {
    const el = document.getElementById("equity");
    const c = await api("curves", { width: String(Math.max(50, el.clientWidth)) });
    const equity = chartIn("equity");
    equity.addSeries(LightweightCharts.LineSeries, { color: "#9e9e9e", title: "buy and hold" })
      .setData(points(c.benchmark));
    const line = equity.addSeries(LightweightCharts.LineSeries, { color: "#1565c0", title: "equity" });
    line.setData(points(c.equity));
    window.papertapeEquity = line;  // live.js appends the live run's equity to it
    equity.timeScale().fitContent();
    const drawdown = chartIn("drawdown");
    drawdown.addSeries(LightweightCharts.AreaSeries, {
      lineColor: "#c62828", topColor: "rgba(198,40,40,0.1)", bottomColor: "rgba(198,40,40,0.4)",
      priceFormat: { type: "percent" },
    }).setData(points({ t: c.drawdown.t, v: c.drawdown.v.map((v) => (v === null ? null : v * 100)) }));
    drawdown.timeScale().fitContent();
    const daily = chartIn("daily");
    daily.addSeries(LightweightCharts.HistogramSeries, { priceFormat: { type: "percent" } })
      .setData(points({ t: c.daily.t, v: c.daily.v.map((v) => (v === null ? null : v * 100)) })
        .map((p) => ({ ...p, color: p.value >= 0 ? "#2e7d32" : "#c62828" })));
    daily.timeScale().fitContent();
    for (const id of ["equity", "drawdown", "daily"]) document.getElementById(id).dataset.drawn = "true";
  }

  const iso = (ms) => (ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 23));
  const side = (s) => (s > 0 ? "buy" : "sell");
  const num = (v, digits) => (v === null || v === undefined ? "" : Number(v).toLocaleString("en-US",
    { maximumFractionDigits: digits }));

  function fillTable(name, columns, body) {
    const table = document.getElementById(name);
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    for (const [title] of columns) head.appendChild(document.createElement("th")).textContent = title;
    const rows = table.createTBody();
    for (const row of body.rows) {
      const tr = rows.insertRow();
      for (const [title, cell] of columns) {
        const td = tr.insertCell();
        td.textContent = String(cell(row) ?? "");
        if (title === "side") td.className = td.textContent;
      }
    }
    const note = document.getElementById(`${name}-note`);
    note.textContent = body.total === 0 ? "none in this run"
      : body.total > body.rows.length ? `the latest ${body.rows.length} of ${body.total}` : `${body.total}`;
    table.dataset.rows = String(body.rows.length);
  }

  const FILLS = [["time (UTC)", (f) => iso(f.ts)], ["symbol", (f) => f.symbol], ["side", (f) => side(f.side)],
    ["qty", (f) => num(f.qty, 8)], ["price", (f) => num(f.price, 8)], ["fee", (f) => num(f.fee, 4)],
    ["liquidity", (f) => f.liquidity], ["realized PnL", (f) => num(f.realized_pnl, 4)],
    ["position after", (f) => num(f.position, 8)], ["order", (f) => f.client_order_id]];

  async function drawFills() {
    const symbol = document.getElementById("fill-symbol").value;
    fillTable("fills", FILLS, await api("fills", symbol ? { symbol } : {}));
  }

  async function drawTables() {
    const t = await api("tables");
    fillTable("orders", [["sent (UTC)", (o) => iso(o.ts)], ["order", (o) => o.client_order_id],
      ["symbol", (o) => o.symbol], ["side", (o) => side(o.side)], ["type", (o) => o.order_type],
      ["qty", (o) => o.qty], ["price", (o) => o.price], ["trigger", (o) => o.trigger_price],
      ["tif", (o) => o.time_in_force], ["status", (o) => o.status]], t.orders);
    fillTable("rejections", [["time (UTC)", (r) => iso(r.ts)], ["order", (r) => r.client_order_id],
      ["reason", (r) => r.reason]], t.rejections);
    fillTable("gaps", [["symbol", (g) => g.symbol], ["status", (g) => g.status], ["from (UTC)", (g) => iso(g.gap_from)],
      ["to (UTC)", (g) => iso(g.gap_to)], ["detail", (g) => g.detail]], t.gaps);
    fillTable("forecasts", [["bar close (UTC)", (p) => iso(p.ts)], ["symbol", (p) => p.symbol ?? ""],
      ["strategy", (p) => p.strategy_id],
      ["latency ms", (p) => p.latency_ms.toFixed(1)], ["dropped", (p) => (p.dropped ? "late" : "")],
      ["values", (p) => p.values]], t.forecasts);
    const s = t.forecast_summary;
    if (s) {
      document.getElementById("forecasts-note").textContent = `${s.forecasts} forecasts, ${s.dropped} dropped as late; `
        + `bar close to forecast median ${s.latency_ms_median.toFixed(1)} ms, p99 ${s.latency_ms_p99.toFixed(1)} ms`;
    }
  }

  async function drawMetrics() {
    const table = document.getElementById("metrics");
    for (const [label, value] of (await api("metrics")).rows) {
      const tr = table.insertRow();
      tr.appendChild(document.createElement("th")).textContent = label;
      tr.insertCell().textContent = value;
    }
  }

  function report(err) { console.error(err); document.getElementById("status").textContent = String(err); }
  document.getElementById("fill-symbol").addEventListener("change", () => drawFills().catch(report));
  // the price chart first: the panels start once it is drawn (or could not be)
  const start = () => Promise.all([drawMetrics(), drawCurves(), drawFills(), drawTables()]).then(() => {
    document.body.dataset.panelsMs = String(Math.round(performance.now()));
    document.body.dataset.panels = "drawn";
  }).catch(report);
  if (document.getElementById("chart").dataset.firstDrawnMs) start();
  else document.addEventListener("papertape:price-drawn", start, { once: true });
})();
