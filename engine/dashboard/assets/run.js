// One run's price chart: the selected symbol's bars, fetched downsampled for the chart's width
// and asked again for the visible window on zoom or scroll (the server returns finer bars),
// with the symbol's fills as markers; hovering a marker shows its order, side, price, qty, fee, PnL.
// The strategy's plotted series (self.plot) are lines over the candles, one value per drawn bar
// (carried in each bar's customValues), refined with the bars.
(function () {
  "use strict";
  const root = document.getElementById("chart");
  const tip = document.getElementById("tooltip");
  const picker = document.getElementById("symbol");
  const runId = root.dataset.run;
  const token = new URLSearchParams(location.search).get("token");
  const chart = LightweightCharts.createChart(root, { autoSize: true, timeScale: { timeVisible: true } });
  const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {});
  const markers = LightweightCharts.createSeriesMarkers(candles, []);
  const state = { coarse: [], shown: [], fills: [], fillRows: [], generation: 0 };
  const COLORS = ["#f59e0b", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569"];
  const lines = new Map();  // plotted series name -> its line series
  let pending = null;

  async function api(path, params) {
    const q = new URLSearchParams(params);
    if (token) q.set("token", token);
    const resp = await fetch(`/api/runs/${runId}/${path}?${q}`);
    if (!resp.ok) throw new Error(`${path}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  }

  function windowParams(range) {
    const p = { symbol: picker.value, width: String(Math.max(50, root.clientWidth)) };
    if (range) { p.start = String(Math.floor(range.from * 1000)); p.end = String(Math.ceil(range.to * 1000)); }
    return p;
  }

  async function loadBars(range) {
    const b = await api("bars", windowParams(range));
    document.getElementById("status").textContent = `${b.symbol}: ${b.total} bars, ${b.t.length} drawn`;
    const names = Object.keys(b.plots || {});
    return b.t.map((t, i) => {
      const bar = { time: t / 1000, open: b.o[i], high: b.h[i], low: b.l[i], close: b.c[i], customValues: {} };
      for (const name of names) if (b.plots[name][i] !== null) bar.customValues[name] = b.plots[name][i];
      return bar;
    });
  }

  function line(name) {
    if (!lines.has(name)) {
      lines.set(name, chart.addSeries(LightweightCharts.LineSeries, {
        color: COLORS[lines.size % COLORS.length], lineWidth: 1, title: name,
        priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
      }));
    }
    return lines.get(name);
  }

  // every plotted series drawn from the shown bars' values (a series absent here is emptied)
  function drawPlots() {
    const names = new Set(lines.keys());
    for (const bar of state.shown) for (const name in bar.customValues || {}) names.add(name);
    for (const name of names) {
      line(name).setData(state.shown.filter((d) => d.customValues && name in d.customValues)
        .map((d) => ({ time: d.time, value: d.customValues[name] })));
    }
    root.dataset.plots = [...names].filter((n) => line(n).data().length).sort().join(",");
  }

  // a live plot point: the value of the drawn bar starting at t ms
  function livePlot(point) {
    if (point.symbol !== picker.value || root.dataset.drawn !== "true") return;
    const time = point.t / 1000;
    for (const data of new Set([state.coarse, state.shown])) {
      const bar = data.find((d) => d.time === time);
      if (bar) bar.customValues = { ...(bar.customValues || {}), [point.name]: point.value };
    }
    const series = line(point.name), drawn = series.data();
    if (!drawn.length || drawn[drawn.length - 1].time <= time) series.update({ time, value: point.value });
    else drawPlots();
    root.dataset.plots = [...lines.keys()].filter((n) => lines.get(n).data().length).sort().join(",");
  }

  // the start of the drawn bar holding stamp ms (bars are merged per column, so a fill sits
  // on the column it fell in)
  function barTime(ms) {
    const data = state.shown, t = ms / 1000;
    let lo = 0, hi = data.length - 1;
    if (hi < 0 || t < data[0].time) return null;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (data[mid].time <= t) lo = mid; else hi = mid - 1; }
    return data[lo].time;
  }

  async function loadFills(range) {
    setMarkers(await api("fills", { ...windowParams(range), markers: "1" }));
  }

  function setMarkers(body) {
    state.fillRows = body.rows;
    state.fills = body.rows.map((f) => ({ ...f, bar: barTime(f.ts) })).filter((f) => f.bar !== null);
    markers.setMarkers(state.fills.map((f, i) => ({
      time: f.bar, position: "atPriceMiddle", price: f.price, id: String(i), size: 1,
      color: f.side > 0 ? "#2e7d32" : "#c62828", shape: f.side > 0 ? "arrowUp" : "arrowDown",
    })));
    root.dataset.markers = String(state.fills.length);
  }

  function describe(f) {
    const pnl = typeof f.realized_pnl === "number" ? [`PnL ${f.realized_pnl.toFixed(4)}`] : [];
    return [`order ${f.client_order_id}`, `${f.side > 0 ? "buy" : "sell"} ${f.qty} ${f.symbol} @ ${f.price}`,
      `fee ${f.fee.toFixed(4)}`, ...pnl, new Date(f.ts).toISOString()].join("\n");
  }

  // where fill i's marker is drawn, in the chart's pixels (the browser test hovers there)
  function markerPoint(i) {
    const f = state.fills[i];
    return { x: chart.timeScale().timeToCoordinate(f.bar), y: candles.priceToCoordinate(f.price) };
  }

  // the fill whose marker is nearest the pointer, within a few pixels (bars can be narrower
  // than a pixel, so the pointer's bar alone does not say which marker it is on)
  function fillAt(point) {
    let best = null, bestDistance = Infinity;
    state.fills.forEach((f, i) => {
      const at = markerPoint(i);
      if (at.x === null || at.y === null) return;
      const dx = Math.abs(at.x - point.x), dy = Math.abs(at.y - point.y);
      if (dx <= 6 && dy <= 10 && dx + dy < bestDistance) { best = f; bestDistance = dx + dy; }
    });
    return best;
  }

  chart.subscribeCrosshairMove((param) => {
    const near = param.point ? fillAt(param.point) : null;
    if (!near) { tip.hidden = true; return; }
    tip.textContent = describe(near);
    tip.style.left = `${root.offsetLeft + param.point.x + 14}px`;
    tip.style.top = `${root.offsetTop + param.point.y + 14}px`;
    tip.hidden = false;
  });

  async function refine(range) {
    const all = state.coarse;
    if (!all.length || (range.from <= all[0].time && range.to >= all[all.length - 1].time)) return;
    const generation = state.generation;
    const finer = await loadBars(range);
    if (generation !== state.generation || !finer.length) return;
    const lo = finer[0].time, hi = finer[finer.length - 1].time;
    const view = chart.timeScale().getVisibleRange();
    state.shown = state.coarse.filter((d) => d.time < lo).concat(finer, state.coarse.filter((d) => d.time > hi));
    candles.setData(state.shown);
    drawPlots();
    if (view) chart.timeScale().setVisibleRange(view);
    await loadFills(range);
  }

  async function show() {
    state.generation += 1;
    const fills = api("fills", { ...windowParams(null), markers: "1" });  // asked beside the bars
    state.coarse = state.shown = await loadBars(null);
    candles.setData(state.shown);
    drawPlots();
    chart.timeScale().fitContent();
    setMarkers(await fills);
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));  // painted
    if (!root.dataset.firstDrawnMs) {
      root.dataset.firstDrawnMs = String(Math.round(performance.now()));
      document.dispatchEvent(new Event("papertape:price-drawn"));
    }
    root.dataset.drawn = "true";
  }

  chart.timeScale().subscribeVisibleTimeRangeChange((range) => {
    if (!range || root.dataset.drawn !== "true") return;
    clearTimeout(pending);
    pending = setTimeout(() => refine(range).catch(report), 250);
  });

  function report(err) {
    document.getElementById("status").textContent = String(err);
    console.error(err);
    document.dispatchEvent(new Event("papertape:price-drawn"));  // the panels need not wait for it
  }
  // a live bar (a closed one, or the forming one from trades) drawn in place: the drawn bar
  // of its open time is replaced, or it is appended after the last one
  function liveBar(bar) {
    if (bar.symbol !== picker.value || root.dataset.drawn !== "true") return false;
    const point = { time: bar.t / 1000, open: bar.o, high: bar.h, low: bar.l, close: bar.c };
    for (const data of new Set([state.coarse, state.shown])) {
      const last = data.length - 1;
      if (last >= 0 && point.time < data[last].time) {
        const i = data.findIndex((d) => d.time === point.time);
        if (i < 0) return false;  // older than the forming bar and not drawn: refined away
        point.customValues = data[i].customValues;  // its plotted values stay
        data[i] = point;
      } else if (last >= 0 && point.time === data[last].time) {
        point.customValues = data[last].customValues;
        data[last] = point;
      } else data.push(point);
    }
    if (point.time >= state.shown[state.shown.length - 1].time) candles.update(point);
    else candles.setData(state.shown);
    return true;
  }

  function liveFill(fill) {
    if (fill.symbol !== picker.value || root.dataset.drawn !== "true") return;
    setMarkers({ rows: state.fillRows.concat([fill]) });
  }

  picker.addEventListener("change", () => { root.dataset.drawn = "false"; show().catch(report); });
  window.papertapeRun = { markerPoint, chart, fills: () => state.fills, liveBar, liveFill, livePlot,
    plots: () => Object.fromEntries([...lines].map(([name, series]) => [name, series.data()])),
    lastBar: () => state.shown[state.shown.length - 1], symbol: () => picker.value };
  show().catch(report);
})();
