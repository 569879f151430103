/* Waggle's page behaviour: the pipeline board, the dashboard chart and the
 * pipeline form. Libraries (Sortable, ECharts, htmx) are served locally from
 * /static/vendor; nothing here reaches outside this site. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* ---- Board ---------------------------------------------------------- */

  var messageTimer = null;

  function showMessage(text, kind) {
    var box = document.getElementById("board-message");
    if (!box) return;
    box.textContent = text;
    box.className = "flash " + (kind || "");
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.hidden = false;
    window.clearTimeout(messageTimer);
    if (kind === "success") {
      messageTimer = window.setTimeout(function () { box.hidden = true; }, 5000);
    }
  }

  function askLossReason() {
    var dialog = document.getElementById("loss-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      var typed = window.prompt("");
      return Promise.resolve(typed && typed.trim() ? typed.trim() : null);
    }
    var input = dialog.querySelector('input[name="loss_reason"]');
    input.value = "";
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        var reason = input.value.trim();
        resolve(dialog.returnValue === "confirm" && reason ? reason : null);
      }, { once: true });
      dialog.showModal();
    });
  }

  function updateColumns(columns) {
    Object.keys(columns).forEach(function (stageId) {
      var figures = columns[stageId];
      var selector = '.column[data-stage-id="' + stageId + '"]';
      document.querySelectorAll(selector).forEach(function (column) {
        column.querySelector('[data-role="count"]').textContent = figures.count;
        column.querySelector('[data-role="total"]').textContent = figures.total;
      });
    });
  }

  function postMove(board, body) {
    return fetch(board.dataset.moveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRF-Token": csrfToken()
      },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        return { status: response.status, ok: response.ok && data.ok, data: data };
      });
    });
  }

  function moveCard(board, event) {
    var card = event.item;
    var source = event.from;
    var target = event.to;
    var oldIndex = event.oldIndex;
    function snapBack() {
      source.insertBefore(card, source.children[oldIndex] || null);
    }
    var body = {
      opportunity_id: Number(card.dataset.opportunityId),
      stage_id: Number(target.dataset.stageId)
    };
    if (board.dataset.ownerId) body.owner_id = Number(board.dataset.ownerId);
    var ready = target.dataset.closing === "lost" ? askLossReason() : Promise.resolve("");
    ready.then(function (reason) {
      if (reason === null) { snapBack(); return; }
      if (reason) body.loss_reason = reason;
      card.classList.add("card-pending");
      return postMove(board, body).then(function (result) {
        card.classList.remove("card-pending");
        if (result.status === 401 && result.data.login) {
          window.location.assign(result.data.login);
          return;
        }
        if (!result.ok) {
          snapBack();
          card.classList.add("card-refused");
          window.setTimeout(function () { card.classList.remove("card-refused"); }, 1500);
          showMessage(result.data.message, "error");
          return;
        }
        if (target.dataset.closing) card.remove();
        updateColumns(result.data.columns);
        showMessage(result.data.message, "success");
      });
    }).catch(function () {
      card.classList.remove("card-pending");
      snapBack();
      showMessage(board.dataset.networkError, "error");
    });
  }

  function initBoard() {
    var board = document.getElementById("board");
    if (!board || typeof window.Sortable === "undefined") return;
    board.querySelectorAll(".cards").forEach(function (list) {
      window.Sortable.create(list, {
        group: "board",
        sort: false,
        animation: 150,
        forceFallback: true,
        fallbackOnBody: true,
        fallbackTolerance: 3,
        ghostClass: "card-ghost",
        chosenClass: "card-chosen",
        dragClass: "card-drag",
        onEnd: function (event) {
          if (event.from !== event.to) moveCard(board, event);
        }
      });
    });
  }

  /* ---- Dashboard chart ------------------------------------------------ */

  function compact(value) {
    if (value >= 1e9) return (value / 1e9).toFixed(1) + "B";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(0) + "K";
    return String(value);
  }

  function initChart() {
    var element = document.getElementById("stage-chart");
    var island = document.getElementById("stage-chart-data");
    if (!element || !island || typeof window.echarts === "undefined") return;
    var data = JSON.parse(island.textContent);
    var inWan = data.unit === "万";
    var amounts = data.amounts.map(function (value) {
      return inWan ? Math.round(value / 100) / 100 : value;
    });
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption({
      color: ["#d97706", "#1d4ed8"],
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      tooltip: { trigger: "axis" },
      legend: { bottom: 0, data: [data.amountLabel, data.countLabel] },
      grid: { left: 64, right: 48, top: 24, bottom: 56 },
      xAxis: {
        type: "category", data: data.labels, axisTick: { show: false },
        axisLabel: { interval: 0 }
      },
      yAxis: [
        { type: "value", axisLabel: { formatter: inWan ? "{value}" : compact } },
        { type: "value", minInterval: 1, splitLine: { show: false } }
      ],
      series: [
        {
          name: data.amountLabel, type: "bar", data: amounts, barMaxWidth: 44,
          itemStyle: { borderRadius: [4, 4, 0, 0] }
        },
        {
          name: data.countLabel, type: "line", yAxisIndex: 1, data: data.counts,
          symbolSize: 7
        }
      ]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  /* ---- Pipeline form -------------------------------------------------- */

  function initStageForm() {
    var button = document.querySelector("[data-add-stage]");
    var template = document.getElementById("stage-row-template");
    var rows = document.getElementById("stage-rows");
    if (!rows) return;
    rows.addEventListener("change", function (event) {
      var box = event.target;
      if (box.name && /-remove$/.test(box.name)) {
        box.closest("tr").classList.toggle("removed", box.checked);
      }
    });
    if (!button || !template) return;
    button.addEventListener("click", function () {
      var index = Number(button.dataset.nextIndex);
      button.dataset.nextIndex = String(index + 1);
      rows.insertAdjacentHTML(
        "beforeend", template.innerHTML.split("__index__").join(String(index))
      );
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initBoard();
    initChart();
    initStageForm();
  });
})();
