/* The charts of the insights page: roll-up against quota, backtest with its
 * +/-10% band, customer-health distribution. ECharts is served locally from
 * /static/vendor; each chart reads a JSON island and the tables beside the
 * charts hold the same figures for readers without JavaScript. */
(function () {
  "use strict";

  function compact(value) {
    var size = Math.abs(value);
    if (size >= 1e9) return (value / 1e9).toFixed(1) + "B";
    if (size >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (size >= 1e3) return (value / 1e3).toFixed(0) + "K";
    return String(value);
  }

  function start(id) {
    var element = document.getElementById(id);
    var island = document.getElementById(id + "-data");
    if (!element || !island || typeof window.echarts === "undefined") return null;
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    window.addEventListener("resize", function () { chart.resize(); });
    return { chart: chart, data: JSON.parse(island.textContent) };
  }

  var font = function () { return getComputedStyle(document.body).fontFamily; };

  function initForecast() {
    var made = start("forecast-chart");
    if (!made) return;
    var data = made.data;
    var series = Object.keys(data.series).map(function (name) {
      return { name: name, type: "bar", stack: "forecast", data: data.series[name], barMaxWidth: 44 };
    });
    series.push({ name: data.quota_label, type: "line", data: data.quota, symbolSize: 8 });
    made.chart.setOption({
      color: ["#15803d", "#d97706", "#1d4ed8"],
      textStyle: { fontFamily: font() },
      tooltip: { trigger: "axis" },
      legend: { bottom: 0 },
      grid: { left: 64, right: 24, top: 24, bottom: 56 },
      xAxis: { type: "category", data: data.names, axisLabel: { interval: 0 } },
      yAxis: { type: "value", axisLabel: { formatter: compact } },
      series: series
    });
  }

  function initBacktest() {
    var made = start("backtest-chart");
    if (!made) return;
    var data = made.data;
    made.chart.setOption({
      color: ["#d97706", "#15803d", "#b91c1c"],
      textStyle: { fontFamily: font() },
      tooltip: { trigger: "axis" },
      legend: { bottom: 0 },
      grid: { left: 64, right: 56, top: 24, bottom: 56 },
      xAxis: { type: "category", data: data.periods },
      yAxis: [
        { type: "value", axisLabel: { formatter: compact } },
        { type: "value", axisLabel: { formatter: "{value}%" }, splitLine: { show: false } }
      ],
      series: [
        { name: data.forecast_label, type: "bar", data: data.forecast, barMaxWidth: 28 },
        { name: data.actual_label, type: "bar", data: data.actual, barMaxWidth: 28 },
        {
          name: data.error_label, type: "line", yAxisIndex: 1, data: data.error,
          connectNulls: false, symbolSize: 7,
          markArea: {
            silent: true,
            itemStyle: { color: "rgba(21, 128, 61, 0.12)" },
            label: { show: true, position: "insideTopRight", formatter: data.band_label },
            data: [[{ yAxis: -data.band }, { yAxis: data.band }]]
          }
        }
      ]
    });
  }

  function initHealth() {
    var made = start("health-chart");
    if (!made) return;
    var data = made.data;
    made.chart.setOption({
      textStyle: { fontFamily: font() },
      tooltip: { trigger: "axis" },
      grid: { left: 48, right: 16, top: 16, bottom: 32 },
      xAxis: { type: "category", data: data.bands },
      yAxis: { type: "value", minInterval: 1 },
      visualMap: {
        show: false, dimension: 0, pieces: [
          { lte: 3, color: "#b91c1c" }, { gt: 3, lte: 5, color: "#d97706" },
          { gt: 5, color: "#15803d" }
        ]
      },
      series: [{ name: data.label, type: "bar", data: data.counts, barMaxWidth: 36 }]
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initForecast();
    initBacktest();
    initHealth();
  });
})();
