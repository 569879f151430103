/* Tracked-material viewer: page navigation and dwell beacons.
 *
 * Counts the time each page is on screen while the tab is visible and the
 * reader is active, and reports it to the page's beacon address as
 * {view_id, page, seconds}: every ten seconds, on a page change, and with
 * navigator.sendBeacon when the tab is hidden or left. No library, no CDN.
 */
(function () {
  "use strict";

  var root = document.getElementById("material-viewer");
  if (!root) {
    return;
  }
  var viewId = parseInt(root.getAttribute("data-view-id"), 10);
  var beaconUrl = root.getAttribute("data-beacon-url");
  var sections = Array.prototype.slice.call(root.querySelectorAll("[data-page]"));
  var pageCount = sections.length;
  var position = document.getElementById("viewer-position");
  var previous = document.getElementById("viewer-previous");
  var next = document.getElementById("viewer-next");

  var INTERVAL_MS = 10000;
  var IDLE_MS = 120000; // no scroll, key or touch for this long: not reading
  var MAX_SECONDS = 60; // the server takes at most this much per beacon

  var current = 1;
  var pendingMs = 0; // counted on the current page, not yet reported
  var countedUntil = Date.now();
  var lastActivity = Date.now();
  var isVisible = document.visibilityState !== "hidden";

  function collect() {
    var time = Date.now();
    if (isVisible) {
      var end = Math.min(time, lastActivity + IDLE_MS);
      if (end > countedUntil) {
        pendingMs += end - countedUntil;
      }
    }
    countedUntil = time;
  }

  function send(page, seconds, isLeaving) {
    var body = JSON.stringify({ view_id: viewId, page: page, seconds: seconds });
    if (isLeaving && navigator.sendBeacon) {
      navigator.sendBeacon(beaconUrl, new Blob([body], { type: "application/json" }));
      return;
    }
    if (window.fetch) {
      window
        .fetch(beaconUrl, {
          method: "POST",
          body: body,
          headers: { "Content-Type": "application/json" },
          credentials: "same-origin",
          keepalive: true,
        })
        .catch(function () {});
    }
  }

  // A final flush (page change, tab hidden) rounds and clears the remainder;
  // a periodic one keeps the fraction for the next round.
  function flush(isFinal, isLeaving) {
    collect();
    var seconds = isFinal ? Math.round(pendingMs / 1000) : Math.floor(pendingMs / 1000);
    pendingMs = isFinal ? 0 : pendingMs - seconds * 1000;
    if (!viewId || !beaconUrl) {
      return;
    }
    while (seconds > 0) {
      var part = Math.min(seconds, MAX_SECONDS);
      send(current, part, isLeaving);
      seconds -= part;
    }
  }

  function showPosition() {
    if (position) {
      position.textContent = position
        .getAttribute("data-template")
        .replace("{number}", String(current))
        .replace("{count}", String(pageCount));
    }
    if (previous) {
      previous.setAttribute("href", "#page-" + Math.max(1, current - 1));
    }
    if (next) {
      next.setAttribute("href", "#page-" + Math.min(pageCount, current + 1));
    }
  }

  function pageInView() {
    var middle = window.innerHeight / 2;
    for (var index = 0; index < sections.length; index += 1) {
      var box = sections[index].getBoundingClientRect();
      if (box.top <= middle && box.bottom >= middle) {
        return index + 1;
      }
    }
    return current;
  }

  function turnTo(page) {
    if (page !== current) {
      flush(true, false);
      current = page;
      showPosition();
    }
  }

  function goTo(page, event) {
    var target = document.getElementById("page-" + page);
    if (!target) {
      return;
    }
    if (event) {
      event.preventDefault();
    }
    target.scrollIntoView({ block: "start" });
    turnTo(page);
  }

  function onActivity() {
    collect();
    lastActivity = Date.now();
  }

  var isScheduled = false;
  function onScroll() {
    onActivity();
    if (!isScheduled) {
      isScheduled = true;
      window.requestAnimationFrame(function () {
        isScheduled = false;
        turnTo(pageInView());
      });
    }
  }

  function onVisibility() {
    if (document.visibilityState === "hidden") {
      flush(true, true);
      isVisible = false;
    } else {
      collect();
      isVisible = true;
      lastActivity = Date.now();
    }
  }

  if (previous) {
    previous.addEventListener("click", function (event) {
      goTo(Math.max(1, current - 1), event);
    });
  }
  if (next) {
    next.addEventListener("click", function (event) {
      goTo(Math.min(pageCount, current + 1), event);
    });
  }
  window.addEventListener("scroll", onScroll, { passive: true });
  ["keydown", "mousemove", "touchstart", "wheel"].forEach(function (name) {
    window.addEventListener(name, onActivity, { passive: true });
  });
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("pagehide", function () {
    flush(true, true);
  });
  window.setInterval(function () {
    flush(false, false);
  }, INTERVAL_MS);

  current = pageInView();
  showPosition();
})();
