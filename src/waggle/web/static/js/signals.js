/* The call heat map of the signals pages: weekday rows, hour columns.
 * ECharts is served locally from /static/vendor; the page's table holds the
 * same counts for readers without JavaScript. */
(function () {
  "use strict";

  function initHeatMap() {
    var element = document.getElementById("call-heatmap");
    var island = document.getElementById("call-heatmap-data");
    if (!element || !island || typeof window.echarts === "undefined") return;
    var data = JSON.parse(island.textContent);
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption({
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      tooltip: {
        position: "top",
        formatter: function (params) {
          var cell = params.data;
          return data.weekdays[cell[1]] + " " + data.hours[cell[0]] + ":00 · " +
            data.label + " " + cell[2];
        }
      },
      grid: { left: 56, right: 24, top: 16, bottom: 72 },
      xAxis: { type: "category", data: data.hours, splitArea: { show: true } },
      yAxis: {
        type: "category", data: data.weekdays, inverse: true,
        splitArea: { show: true }
      },
      visualMap: {
        min: 0, max: Math.max(data.max, 1), calculable: true,
        orient: "horizontal", left: "center", bottom: 8,
        inRange: { color: ["#fdf3e1", "#d98a1c", "#8a4b03"] }
      },
      series: [{
        name: data.label, type: "heatmap", data: data.cells,
        label: { show: true, formatter: function (p) { return p.data[2] || ""; } },
        emphasis: { itemStyle: { shadowBlur: 6, shadowColor: "rgba(0,0,0,0.3)" } }
      }]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  document.addEventListener("DOMContentLoaded", initHeatMap);
})();
