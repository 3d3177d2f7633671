// ivcontrast dashboard: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Times come as UTC <time datetime="..."> elements; show them in the viewer's zone.
  function localTimes() {
    var pad = function (n) { return String(n).padStart(2, "0"); };
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    });
  }

  // The overview reloads itself while visible, so a wall screen stays current.
  function autoRefresh() {
    var seconds = Number(document.body.dataset.refresh || 0);
    if (!seconds) { return; }
    window.setInterval(function () {
      if (document.visibilityState === "visible") { window.location.reload(); }
    }, seconds * 1000);
  }

  // Thumbnails: count those that decoded (the page test reads these attributes).
  function thumbImages() {
    return Array.prototype.slice.call(document.querySelectorAll("img[data-thumb]"));
  }

  // An image that failed (before or after this script ran) says so under it, once.
  function markUnavailable(img) {
    if (img.classList.contains("broken")) { return; }
    img.classList.add("broken");
    var cap = img.closest("figure").querySelector("figcaption");
    if (cap) { cap.insertAdjacentText("beforeend", " (image unavailable)"); }
  }

  function recordThumbnails() {
    var imgs = thumbImages();
    if (!imgs.length) { return; }
    var loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    var failed = imgs.filter(function (i) { return i.complete && i.naturalWidth === 0; });
    failed.forEach(markUnavailable);
    document.body.dataset.thumbsTotal = String(imgs.length);
    document.body.dataset.thumbsLoaded = String(loaded.length);
    document.body.dataset.thumbsFailed = String(failed.length);
    document.body.dataset.thumbsWidths = loaded.map(function (i) { return i.naturalWidth; }).join(",");
  }

  function thumbnails() {
    thumbImages().forEach(function (img) {
      img.addEventListener("load", recordThumbnails);
      img.addEventListener("error", function () {
        markUnavailable(img);
        recordThumbnails();
      });
    });
    recordThumbnails();
  }

  function svgPoint(svg, evt) {
    var pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse());
  }

  // The curve: a crosshair with the nearest slice's z and probability; markers <-> thumbnails.
  function curve() {
    var svg = document.getElementById("curve");
    var dataEl = document.getElementById("curve-data");
    if (!svg || !dataEl) { return; }
    var data = JSON.parse(dataEl.textContent);
    var hover = svg.querySelector(".hover");
    var line = hover.querySelector(".hover-line");
    var dot = hover.querySelector(".hover-dot");
    var box = hover.querySelector(".hover-box");
    var text = hover.querySelector(".hover-text");
    svg.addEventListener("mousemove", function (evt) {
      var p = svgPoint(svg, evt);
      if (p.x < data.left - 5 || p.x > data.right + 5) { hover.setAttribute("visibility", "hidden"); return; }
      var best = 0;
      for (var i = 1; i < data.xs.length; i++) {
        if (Math.abs(data.xs[i] - p.x) < Math.abs(data.xs[best] - p.x)) { best = i; }
      }
      var x = data.xs[best], y = data.ys[best];
      line.setAttribute("x1", x); line.setAttribute("x2", x);
      dot.setAttribute("cx", x); dot.setAttribute("cy", y);
      var bx = Math.min(x + 8, data.right - 150);
      box.setAttribute("x", bx); box.setAttribute("y", data.top + 4);
      text.setAttribute("x", bx + 8); text.setAttribute("y", data.top + 19);
      text.textContent = "z " + data.zs[best].toFixed(1) + " mm   p " + data.ps[best].toFixed(3);
      hover.setAttribute("visibility", "visible");
    });
    svg.addEventListener("mouseleave", function () { hover.setAttribute("visibility", "hidden"); });

    function highlight(index, on) {
      svg.querySelectorAll('.marker[data-index="' + index + '"]').forEach(function (m) { m.classList.toggle("active", on); });
      document.querySelectorAll('.thumb[data-index="' + index + '"]').forEach(function (t) { t.classList.toggle("active", on); });
    }
    document.querySelectorAll(".thumb[data-index], .marker[data-index]").forEach(function (el) {
      var index = el.getAttribute("data-index");
      el.addEventListener("mouseenter", function () { highlight(index, true); });
      el.addEventListener("mouseleave", function () { highlight(index, false); });
    });
    document.body.dataset.curvePoints = String(data.xs.length);
  }

  // Filter forms: leave empty fields out of the URL.
  function tidyForms() {
    document.querySelectorAll("form.filters").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("input, select").forEach(function (el) {
          if (!el.value) { el.disabled = true; }
        });
      });
    });
  }

  function start() {
    localTimes();
    tidyForms();
    autoRefresh();
    curve();
    thumbnails();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  // Once every image has settled (load events may come before the listeners).
  window.addEventListener("load", function () {
    recordThumbnails();
    document.body.dataset.ready = "1";
  });
})();
