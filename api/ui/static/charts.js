"use strict";
// One chart per metric of the selected run, against step, with earlier runs drawn fainter
// behind it. uPlot (vendored) draws them; a caption says the numbers in words.
(function () {
  const { el } = window.Dash;
  const COLORS = ["#2563eb", "#d97706", "#059669", "#9333ea"];
  const HEIGHT = 220;
  const plots = new Map(); // metric name -> {plot, key, figure}

  function summary(name, steps, values) {
    if (!values.length) return `${name}: no points yet`;
    const last = values[values.length - 1];
    const low = Math.min(...values);
    const high = Math.max(...values);
    return `${name}: ${values.length} points, last ${fmt(last)} at step ${steps[steps.length - 1]}, ` +
      `lowest ${fmt(low)}, highest ${fmt(high)}`;
  }

  function fmt(value) {
    return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
      ? value.toExponential(3)
      : String(Math.round(value * 1e4) / 1e4);
  }

  function widthOf(figure) {
    return Math.max(240, figure.clientWidth);
  }

  // runs: [{label, metrics}] with the selected run first; metrics as the API answers them.
  function render(container, runs) {
    const primary = runs[0];
    const names = primary ? primary.metrics.series.map((series) => series.name) : [];
    for (const [name, entry] of plots) {
      if (!names.includes(name)) {
        resized.unobserve(entry.figure);
        entry.plot.destroy();
        entry.figure.remove();
        plots.delete(name);
      }
    }
    const empty = container.querySelector(".no-metrics");
    if (!names.length) {
      if (!empty) {
        container.append(el("p", { className: "muted no-metrics" }, "No metrics reported for this run yet."));
      }
      return;
    }
    if (empty) empty.remove();
    for (const name of names) {
      const lines = [];
      runs.forEach((run, index) => {
        const series = run.metrics.series.find((candidate) => candidate.name === name);
        if (series && series.steps.length) lines.push({ run, index, series });
      });
      const data = window.uPlot.join(lines.map(({ series }) => [series.steps, series.values]));
      const key = lines.map(({ run }) => run.label).join("\n");
      const own = lines.find(({ index }) => index === 0);
      const caption = own ? summary(name, own.series.steps, own.series.values) : summary(name, [], []);
      let entry = plots.get(name);
      if (entry && entry.key === key) {
        entry.plot.setData(data);
        entry.caption.textContent = caption;
        continue;
      }
      if (entry) {
        resized.unobserve(entry.figure);
        entry.plot.destroy();
        entry.figure.remove();
      }
      const target = el("div", { className: "plot" });
      const captionEl = el("figcaption", null, caption);
      const figure = el("figure", { className: "chart", "data-metric": name }, el("h3", null, name), target, captionEl);
      container.append(figure);
      const plot = new window.uPlot(
        {
          width: widthOf(figure),
          height: HEIGHT,
          scales: { x: { time: false } },
          axes: [{ label: "step" }, { size: 60 }],
          series: [
            { label: "step" },
            ...lines.map(({ run, index }) => ({
              label: run.label,
              stroke: COLORS[index % COLORS.length],
              width: index === 0 ? 2 : 1,
              alpha: index === 0 ? 1 : 0.6,
              spanGaps: true,
              points: { show: own && own.series.steps.length < 60 && index === 0 },
            })),
          ],
        },
        data,
        target
      );
      entry = { plot, key, figure, caption: captionEl };
      resized.observe(figure);
      plots.set(name, entry);
    }
  }

  // Each chart follows its figure's width: a window resized, a phone turned.
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const found = plots.get(entry.target.dataset.metric);
      if (found && Math.abs(found.plot.width - widthOf(entry.target)) > 1) {
        found.plot.setSize({ width: widthOf(entry.target), height: HEIGHT });
      }
    }
  });

  function clear() {
    for (const { plot, figure } of plots.values()) {
      resized.unobserve(figure);
      plot.destroy();
      figure.remove();
    }
    plots.clear();
  }

  window.Charts = { render, clear };
})();
