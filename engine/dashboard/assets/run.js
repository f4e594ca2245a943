// One run's price chart: bars fetched downsampled for the chart's width, asked again for the
// visible window when the user zooms or scrolls (the server returns finer bars).
(function () {
  "use strict";
  const root = document.getElementById("chart");
  const runId = root.dataset.run;
  const token = new URLSearchParams(location.search).get("token");
  const chart = LightweightCharts.createChart(root, { height: 420, timeScale: { timeVisible: true } });
  const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {});
  let pending = null;

  async function load(range) {
    const q = new URLSearchParams({ width: String(Math.max(50, root.clientWidth)) });
    if (token) q.set("token", token);
    if (range) { q.set("start", String(Math.floor(range.from * 1000))); q.set("end", String(Math.ceil(range.to * 1000))); }
    const resp = await fetch(`/api/runs/${runId}/bars?${q}`);
    if (!resp.ok) { document.getElementById("status").textContent = await resp.text(); return; }
    const b = await resp.json();
    const data = b.t.map((t, i) => ({ time: t / 1000, open: b.o[i], high: b.h[i], low: b.l[i], close: b.c[i] }));
    document.getElementById("status").textContent = `${b.symbol}: ${b.total} bars, ${data.length} drawn`;
    return data;
  }

  let coarse = [];
  load(null).then((data) => {
    if (!data) return;
    coarse = data;
    candles.setData(coarse);
    chart.timeScale().fitContent();
    chart.timeScale().subscribeVisibleTimeRangeChange((range) => {
      if (!range) return;
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const finer = await load(range);
        if (!finer || !finer.length) return;
        const lo = finer[0].time, hi = finer[finer.length - 1].time;
        const view = chart.timeScale().getVisibleRange();
        candles.setData(coarse.filter((d) => d.time < lo).concat(finer, coarse.filter((d) => d.time > hi)));
        if (view) chart.timeScale().setVisibleRange(view);
      }, 250);
    });
  });
})();
