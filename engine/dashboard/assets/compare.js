// Runs compared: each run's equity curve (downsampled on the server) as one line.
(function () {
  "use strict";
  const root = document.getElementById("chart");
  const token = new URLSearchParams(location.search).get("token");
  const chart = LightweightCharts.createChart(root, { height: 420, timeScale: { timeVisible: true } });
  const colors = ["#2962ff", "#e91e63", "#43a047", "#fb8c00", "#8e24aa"];
  const ids = root.dataset.runs.split(",").filter(Boolean);
  Promise.all(ids.map(async (id, i) => {
    const q = new URLSearchParams({ width: String(Math.max(50, root.clientWidth)) });
    if (token) q.set("token", token);
    const curve = await (await fetch(`/api/runs/${id}/equity?${q}`)).json();
    const line = chart.addSeries(LightweightCharts.LineSeries, { color: colors[i % colors.length], title: `run ${id}` });
    line.setData(curve.t.map((t, k) => ({ time: t / 1000, value: curve.equity[k] })));
  })).then(() => {
    chart.timeScale().fitContent();
    document.getElementById("status").textContent = `${ids.length} curves drawn`;
  });
})();
