/* The rules pages' behaviour: field completion in the rule editor and the
 * weekly chart of a backtest. Plain JavaScript; ECharts is served locally
 * from /static/vendor, and the backtest page holds the same counts in a
 * table for readers without JavaScript. */
(function () {
  "use strict";

  var NAMESPACES = ["event", "opportunity", "account", "contact", "rep"];
  var PATH_BEFORE_CURSOR = /([a-z_]+)\.([a-z_]*)$/;
  var MAX_SHOWN = 12;

  /* ---- Editor: completion of field paths at the cursor ------------------ */

  function pathAtCursor(textarea) {
    var before = textarea.value.slice(0, textarea.selectionStart);
    var found = PATH_BEFORE_CURSOR.exec(before);
    if (!found || NAMESPACES.indexOf(found[1]) < 0) return null;
    return { typed: found[0], start: textarea.selectionStart - found[0].length };
  }

  function replaceRange(textarea, start, end, text) {
    var value = textarea.value;
    textarea.value = value.slice(0, start) + text + value.slice(end);
    var cursor = start + text.length;
    textarea.setSelectionRange(cursor, cursor);
    textarea.focus();
    // htmx re-checks the rule on keyup when the value changed.
    textarea.dispatchEvent(new Event("keyup", { bubbles: true }));
  }

  function Completer(textarea, list) {
    this.textarea = textarea;
    this.list = list;
    this.fields = (textarea.dataset.fields || "").split(" ").filter(Boolean);
    this.matches = [];
    this.chosen = 0;
    this.path = null;
  }

  Completer.prototype.isOpen = function () {
    return !this.list.hidden && this.matches.length > 0;
  };

  Completer.prototype.close = function () {
    this.list.hidden = true;
    this.matches = [];
    this.path = null;
  };

  Completer.prototype.update = function (force) {
    var path = pathAtCursor(this.textarea);
    if (!path && !force) {
      this.close();
      return;
    }
    var typed = path ? path.typed : "";
    this.path = path || { typed: "", start: this.textarea.selectionStart };
    this.matches = this.fields.filter(function (name) {
      return name.indexOf(typed) === 0 && name !== typed;
    }).slice(0, MAX_SHOWN);
    this.chosen = 0;
    this.render();
  };

  Completer.prototype.render = function () {
    var self = this;
    this.list.textContent = "";
    this.matches.forEach(function (name, index) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.textContent = name;
      if (index === self.chosen) {
        item.setAttribute("aria-selected", "true");
        button.style.fontWeight = "600";
      }
      button.addEventListener("mousedown", function (event) {
        event.preventDefault();
        self.accept(index);
      });
      item.appendChild(button);
      self.list.appendChild(item);
    });
    this.list.hidden = this.matches.length === 0;
  };

  Completer.prototype.accept = function (index) {
    var name = this.matches[index];
    var path = this.path;
    this.close();
    if (!name || !path) return;
    replaceRange(this.textarea, path.start, this.textarea.selectionStart, name);
  };

  Completer.prototype.onKeyDown = function (event) {
    if (event.ctrlKey && (event.key === " " || event.code === "Space")) {
      event.preventDefault();
      this.update(true);
      return;
    }
    if (!this.isOpen()) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      var step = event.key === "ArrowDown" ? 1 : -1;
      this.chosen = (this.chosen + step + this.matches.length) % this.matches.length;
      this.render();
    } else if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      this.accept(this.chosen);
    } else if (event.key === "Escape") {
      event.preventDefault();
      this.close();
    }
  };

  function initEditor() {
    var textarea = document.getElementById("rule-yaml");
    var list = document.getElementById("rule-completions");
    if (!textarea || !list) return;
    var completer = new Completer(textarea, list);
    textarea.addEventListener("keydown", function (event) {
      completer.onKeyDown(event);
    });
    textarea.addEventListener("input", function () { completer.update(false); });
    textarea.addEventListener("blur", function () { completer.close(); });
    // A field in the catalogue beside the editor is inserted at the cursor.
    document.querySelectorAll(".rule-field").forEach(function (element) {
      element.style.cursor = "pointer";
      element.addEventListener("click", function () {
        var path = pathAtCursor(textarea);
        var start = path ? path.start : textarea.selectionStart;
        replaceRange(textarea, start, textarea.selectionEnd, element.dataset.field);
      });
    });
  }

  /* ---- Backtest: firings per week -------------------------------------- */

  function initWeekChart() {
    var element = document.getElementById("backtest-weeks");
    var island = document.getElementById("backtest-weeks-data");
    if (!element || !island || typeof window.echarts === "undefined") return;
    var data = JSON.parse(island.textContent);
    var chart = window.echarts.init(element, null, { renderer: "canvas" });
    chart.setOption({
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      tooltip: { trigger: "axis" },
      grid: { left: 48, right: 16, top: 16, bottom: 40 },
      xAxis: { type: "category", data: data.weeks },
      yAxis: { type: "value", minInterval: 1 },
      series: [{
        name: data.label, type: "bar", data: data.counts,
        itemStyle: { color: "#d98a1c" }
      }]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initEditor();
    initWeekChart();
  });
})();
