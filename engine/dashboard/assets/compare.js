// Runs compared: each run's equity curve (downsampled on the server) divided by its initial
// cash, as one line each on one chart.
(function () {
  "use strict";
  const root = document.getElementById("chart");
  const token = new URLSearchParams(location.search).get("token");
  const chart = LightweightCharts.createChart(root, { autoSize: true, timeScale: { timeVisible: true } });
  const colors = ["#2962ff", "#e91e63", "#43a047", "#fb8c00", "#8e24aa"];
  const ids = root.dataset.runs.split(",").filter(Boolean);
  Promise.all(ids.map(async (id, i) => {
    const q = new URLSearchParams({ width: String(Math.max(50, root.clientWidth)) });
    if (token) q.set("token", token);
    const resp = await fetch(`/api/runs/${id}/equity?${q}`);
    if (!resp.ok) throw new Error(`run ${id}: ${resp.status}`);
    const curve = await resp.json();
    const line = chart.addSeries(LightweightCharts.LineSeries, { color: colors[i % colors.length], title: `run ${id}` });
    line.setData(curve.t.map((t, k) => ({ time: t / 1000, value: curve.equity[k] / curve.initial_cash }))
      .filter((p) => Number.isFinite(p.value)));
  })).then(() => {
    chart.timeScale().fitContent();
    document.getElementById("status").textContent = `${ids.length} curves drawn`;
  }).catch((err) => { console.error(err); document.getElementById("status").textContent = String(err); });
})();
