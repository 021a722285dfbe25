// Jobs -> Overview: draws the four charts with Chart.js and refreshes the page's
// figures from the data URL every few seconds, without reloading the page.
(function () {
  "use strict";
  const script = document.getElementById("dash-script");
  const dataUrl = script.dataset.url;
  const refreshMs = Number(script.dataset.refreshMs) || 5000;
  // The state colours live in jobs-overview.css (--state-*), shared with the legends.
  const style = getComputedStyle(document.querySelector(".dash"));
  const colors = Object.fromEntries(
    ["succeeded", "failed", "queued", "retrying", "running", "dead", "oldest"].map(
      (name) => [name, style.getPropertyValue(`--state-${name}`).trim()]),
  );
  // Each chart's legend is in the page, next to its title (see _legend.html).
  const plugins = { legend: { display: false } };
  const charts = {};

  function throughputConfig(series) {
    return {
      type: "bar",
      data: {
        labels: series.labels,
        datasets: ["succeeded", "failed"].map((name) => ({
          label: name, data: series[name], backgroundColor: colors[name], stack: "runs",
        })),
      },
      options: {
        animation: false, maintainAspectRatio: false, plugins: plugins,
        scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "tasks" } } },
      },
    };
  }

  function depthConfig(series) {
    const datasets = ["queued", "retrying", "running", "dead"].map((name) => ({
      label: name, data: series[name], borderColor: colors[name], backgroundColor: colors[name],
      pointRadius: 2, borderWidth: 2, spanGaps: true, yAxisID: "y",
    }));
    datasets.push({
      label: "oldest queued (s)", data: series.oldest, borderColor: colors.oldest,
      backgroundColor: colors.oldest, borderDash: [4, 3], pointRadius: 2, borderWidth: 2,
      spanGaps: true, yAxisID: "age",
    });
    return {
      type: "line",
      data: { labels: series.labels, datasets: datasets },
      options: {
        animation: false, maintainAspectRatio: false, plugins: plugins,
        scales: {
          x: { ticks: { maxTicksLimit: 12 } },
          y: { beginAtZero: true, title: { display: true, text: "tasks" } },
          age: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "seconds" } },
        },
      },
    };
  }

  const layout = {
    "chart-throughput-hour": ["throughput_hour", throughputConfig],
    "chart-throughput-week": ["throughput_week", throughputConfig],
    "chart-depth-hour": ["depth_hour", depthConfig],
    "chart-depth-week": ["depth_week", depthConfig],
  };

  function draw(data) {
    for (const [id, [key, config]] of Object.entries(layout)) {
      const series = data[key];
      if (!charts[id]) {
        charts[id] = new Chart(document.getElementById(id), config(series));
        continue;
      }
      const chart = charts[id];
      chart.data.labels = series.labels;
      chart.data.datasets.forEach((dataset) => {
        const name = dataset.label.startsWith("oldest") ? "oldest" : dataset.label;
        dataset.data = series[name];
      });
      chart.update("none");
    }
  }

  async function refresh() {
    try {
      const response = await fetch(dataUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        draw(data.charts);
        document.getElementById("dash-tables").innerHTML = data.tables;
        const now = document.getElementById("dash-now");
        now.textContent = new Date(data.now).toLocaleTimeString();
        now.dateTime = data.now;
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      }
    } finally {
      setTimeout(refresh, refreshMs);
    }
  }

  draw(JSON.parse(document.getElementById("dash-charts-data").textContent));
  document.body.dataset.chartsDrawn = "true";
  setTimeout(refresh, refreshMs);
})();
